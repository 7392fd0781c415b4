"""Resolve paths inside a root directory, never leaving it.

Every component is looked up inside ``root``: ``..`` stops at the root, and a symlink is
followed as the container would follow it (an absolute target restarts from the root, a
relative one from the link's directory). The result is always below ``root``, whatever the
archive or the existing tree contains.
"""

from __future__ import annotations

import os

from pycontainerd.errdefs import InvalidArgument

MAX_SYMLINKS = 255


def clean_name(name: str) -> str:
    """A tar member name as a clean relative path (``""`` for the root itself).

    Leading ``/`` and ``./`` are dropped and ``..`` cannot climb above the top: the name
    ``../../etc/passwd`` becomes ``etc/passwd``, as containerd treats it.
    """
    parts: list[str] = []
    for part in name.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def resolve(root: str, rel: str, *, follow_last: bool = True) -> str:
    """The host path of ``rel`` inside ``root`` with symlinks resolved inside the root.

    Args:
        root: an absolute directory.
        rel: a path relative to the root (absolute paths are taken as relative).
        follow_last: whether a symlink in the last component is followed too.
    """
    root = os.path.abspath(root)
    pending = [p for p in rel.split("/") if p]
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        is_last = not pending
        if (follow_last or not is_last) and os.path.islink(candidate):
            links += 1
            if links > MAX_SYMLINKS:
                raise InvalidArgument(f"too many levels of symbolic links resolving {rel!r}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending = [p for p in target.split("/") if p] + pending
            continue
        resolved.append(part)
    out = os.path.join(root, *resolved)
    # Defence in depth: by construction the result is inside the root.
    if out != root and not out.startswith(root + os.sep):
        raise InvalidArgument(f"path {rel!r} escapes {root}")
    return out
