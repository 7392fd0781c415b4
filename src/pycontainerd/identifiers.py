"""Validation of the identifiers containerd accepts (namespaces, containers, leases...).

Same rule as containerd: components of letters and digits joined by single ``.``, ``_`` or
``-`` separators, at most 76 characters.
"""

from __future__ import annotations

import re

from pycontainerd.errdefs import InvalidArgument

MAX_LENGTH = 76
# The pattern text is quoted in error messages exactly as containerd prints it.
_PATTERN_TEXT = r"^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$"
_IDENTIFIER = re.compile(_PATTERN_TEXT)


def validate(identifier: str) -> str:
    """Return ``identifier`` unchanged if valid, else raise :class:`InvalidArgument`."""
    if not identifier:
        raise InvalidArgument("identifier must not be empty")
    if len(identifier) > MAX_LENGTH:
        raise InvalidArgument(f'identifier "{identifier}" greater than maximum length ({MAX_LENGTH} characters)')
    if not _IDENTIFIER.fullmatch(identifier):
        raise InvalidArgument(f'identifier "{identifier}" must match {_PATTERN_TEXT}')
    return identifier
