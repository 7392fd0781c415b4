"""Users and groups: CRI's run-as fields, image ``USER`` strings, and the image's /etc/passwd and /etc/group.

containerd reads the two files out of the container's rootfs; here the CRI service passes their
text (None when the image has no such file). Parsing follows moby's ``user`` package, which
containerd uses: blank lines are skipped, missing fields are empty, and an unparsable number
counts as 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pycontainerd.errdefs import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Iterable

_MAX_ID = 2**31 - 1  # runc refuses larger uids and gids, and containerd follows it
_INTEGER = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    """One /etc/passwd line: ``name:password:uid:gid:gecos:home:shell``."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class GroupEntry:
    """One /etc/group line: ``name:password:gid:member,member...``."""

    name: str
    gid: int
    members: tuple[str, ...]


def _fields(text: str | None) -> list[list[str]]:
    return [line.strip().split(":") for line in (text or "").splitlines() if line.strip()]


def _field_int(fields: list[str], index: int) -> int:
    value = fields[index] if index < len(fields) else ""
    return int(value) if _INTEGER.fullmatch(value) else 0


def parse_passwd(text: str | None) -> list[PasswdEntry]:
    """The entries of an /etc/passwd file."""
    return [PasswdEntry(f[0], _field_int(f, 2), _field_int(f, 3)) for f in _fields(text)]


def parse_group(text: str | None) -> list[GroupEntry]:
    """The entries of an /etc/group file."""
    groups = []
    for f in _fields(text):
        members = f[3].split(",") if len(f) > 3 and f[3] else []
        groups.append(GroupEntry(f[0], _field_int(f, 2), tuple(members)))
    return groups


def user_string(username: str, uid: int | None, gid: int | None) -> str:
    """The ``user[:group]`` string for CRI's run_as_username / run_as_user / run_as_group.

    The username wins over the uid; a group needs a user.

    Raises:
        InvalidArgument: a group without a user.
    """
    user = username or ("" if uid is None else str(uid))
    if not user:
        if gid is not None:
            raise InvalidArgument(f'user group "{gid}" is specified without user')
        return ""
    return user if gid is None else f"{user}:{gid}"


def _number(text: str, what: str, userstr: str) -> int | None:
    """``text`` as an id, or None when it is a name (Go's Atoi rules, then runc's range)."""
    if not _INTEGER.fullmatch(text):
        return None
    value = int(text)
    if not 0 <= value <= _MAX_ID:
        raise InvalidArgument(f'invalid USER value "{userstr}": {what} out of range')
    return value


def _passwd_user(passwd: str | None, *, name: str = "", uid: int | None = None) -> PasswdEntry | None:
    for entry in parse_passwd(passwd):
        if (name and entry.name == name) or (uid is not None and entry.uid == uid):
            return entry
    return None


def resolve_user(userstr: str, passwd: str | None, group: str | None) -> tuple[int, int]:
    """``(uid, gid)`` for an OCI image ``USER`` string, looked up as containerd's ``WithUser`` does.

    * ``uid``: the user's primary group from /etc/passwd, or gid 0 when the uid is not listed;
    * ``name``: must be in /etc/passwd;
    * ``uid:gid``: taken as is, no lookup;
    * ``name:gid``, ``uid:group``, ``name:group``: names must be in /etc/passwd and /etc/group.

    Raises:
        InvalidArgument: a malformed string, an id out of range, or a name not in the files.
    """
    parts = userstr.split(":")
    if len(parts) > 2:
        raise InvalidArgument(f"invalid USER value {userstr}")
    uid = _number(parts[0], "uid", userstr)
    if len(parts) == 1:
        if uid is None:
            entry = _passwd_user(passwd, name=parts[0])
            if entry is None:
                raise InvalidArgument(f"no user {parts[0]!r} in the image's /etc/passwd")
            return entry.uid, entry.gid
        entry = _passwd_user(passwd, uid=uid)
        return (uid, entry.gid) if entry is not None else (uid, 0)
    gid = _number(parts[1], "gid", userstr)
    if uid is None and parts[0]:
        entry = _passwd_user(passwd, name=parts[0])
        if entry is None:
            raise InvalidArgument(f"no user {parts[0]!r} in the image's /etc/passwd")
        uid = entry.uid
    if gid is None and parts[1]:
        found = [g for g in parse_group(group) if g.name == parts[1]]
        if not found:
            raise InvalidArgument(f"no group {parts[1]!r} in the image's /etc/group")
        gid = found[0].gid
    return uid or 0, gid or 0


def member_gids(user: str, passwd: str | None, group: str | None) -> list[int]:
    """The groups /etc/group lists ``user`` (a name or a uid) as a member of.

    A uid is first turned into its name through /etc/passwd (an unknown uid has no groups).
    A group named like the user (its personal group) does not count: that is the primary group.
    """
    name = user
    if _INTEGER.fullmatch(user):
        entry = _passwd_user(passwd, uid=int(user))
        if entry is None:
            return []
        name = entry.name
    return [g.gid for g in parse_group(group) if g.name != name and name in g.members]


def merge_gids(*lists: Iterable[int]) -> list[int]:
    """The union of gid lists, sorted (containerd's merge of additional gids)."""
    return sorted({gid for gids in lists for gid in gids})
