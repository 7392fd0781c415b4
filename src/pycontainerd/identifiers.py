"""Validation of the identifiers containerd accepts (namespaces, containers, leases...).

Same rule as containerd: components of letters and digits joined by single ``.``, ``_`` or
``-`` separators, at most 76 characters.
"""

from __future__ import annotations

import re

from pycontainerd.errdefs import InvalidArgument

MAX_LENGTH = 76
_IDENTIFIER = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")


def validate(identifier: str) -> str:
    """Return ``identifier`` unchanged if valid, else raise :class:`InvalidArgument`."""
    if not identifier:
        raise InvalidArgument("identifier must not be empty")
    if len(identifier) > MAX_LENGTH:
        raise InvalidArgument(f"identifier {identifier!r} greater than maximum length ({MAX_LENGTH} characters)")
    if not _IDENTIFIER.fullmatch(identifier):
        raise InvalidArgument(f"identifier {identifier!r} must match {_IDENTIFIER.pattern}")
    return identifier
