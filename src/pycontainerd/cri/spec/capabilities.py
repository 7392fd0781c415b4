"""Linux capabilities: the known set, CRI add/drop lists, and what privileged grants.

The sets live in ``process.capabilities`` as lists of ``CAP_*`` names; containerd's default
spec fills ``bounding``, ``permitted`` and ``effective`` with the same 14 capabilities.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

KNOWN_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",  # 0
    "CAP_DAC_OVERRIDE",  # 1
    "CAP_DAC_READ_SEARCH",  # 2
    "CAP_FOWNER",  # 3
    "CAP_FSETID",  # 4
    "CAP_KILL",  # 5
    "CAP_SETGID",  # 6
    "CAP_SETUID",  # 7
    "CAP_SETPCAP",  # 8
    "CAP_LINUX_IMMUTABLE",  # 9
    "CAP_NET_BIND_SERVICE",  # 10
    "CAP_NET_BROADCAST",  # 11
    "CAP_NET_ADMIN",  # 12
    "CAP_NET_RAW",  # 13
    "CAP_IPC_LOCK",  # 14
    "CAP_IPC_OWNER",  # 15
    "CAP_SYS_MODULE",  # 16
    "CAP_SYS_RAWIO",  # 17
    "CAP_SYS_CHROOT",  # 18
    "CAP_SYS_PTRACE",  # 19
    "CAP_SYS_PACCT",  # 20
    "CAP_SYS_ADMIN",  # 21
    "CAP_SYS_BOOT",  # 22
    "CAP_SYS_NICE",  # 23
    "CAP_SYS_RESOURCE",  # 24
    "CAP_SYS_TIME",  # 25
    "CAP_SYS_TTY_CONFIG",  # 26
    "CAP_MKNOD",  # 27
    "CAP_LEASE",  # 28
    "CAP_AUDIT_WRITE",  # 29
    "CAP_AUDIT_CONTROL",  # 30
    "CAP_SETFCAP",  # 31
    "CAP_MAC_OVERRIDE",  # 32
    "CAP_MAC_ADMIN",  # 33
    "CAP_SYSLOG",  # 34
    "CAP_WAKE_ALARM",  # 35
    "CAP_BLOCK_SUSPEND",  # 36
    "CAP_AUDIT_READ",  # 37
    "CAP_PERFMON",  # 38
    "CAP_BPF",  # 39
    "CAP_CHECKPOINT_RESTORE",  # 40
)
"""Every capability of Linux 5.9 and later, in capability-number order (41)."""

_GRANTED = ("bounding", "effective", "permitted")


def capabilities_from_mask(mask: int) -> tuple[str, ...]:
    """The known capabilities whose bit is set in ``mask`` (a ``CapEff`` value of /proc/<pid>/status)."""
    return tuple(name for bit, name in enumerate(KNOWN_CAPABILITIES) if mask >> bit & 1)


def cap_name(name: str) -> str:
    """A CRI capability name as the spec spells it: upper case with the ``CAP_`` prefix.

    Kubelet sends ``SYS_ADMIN``; a ``CAP_SYS_ADMIN`` is taken as the same capability
    (containerd would make it ``CAP_CAP_SYS_ADMIN``, which no runtime knows).
    """
    upper = name.upper()
    return upper if upper.startswith("CAP_") else "CAP_" + upper


def _caps(spec: dict[str, Any]) -> dict[str, list[str]]:
    caps: dict[str, list[str]] = spec["process"].setdefault("capabilities", {})
    return caps


def set_capabilities(spec: dict[str, Any], caps: Sequence[str]) -> None:
    """Make ``caps`` the bounding, effective and permitted sets; inheritable keeps only those."""
    sets = _caps(spec)
    for kind in _GRANTED:
        sets[kind] = list(caps)
    if not caps:
        sets.pop("inheritable", None)
    elif sets.get("inheritable"):
        sets["inheritable"] = [c for c in sets["inheritable"] if c in caps]


def add_capabilities(spec: dict[str, Any], caps: Iterable[str]) -> None:
    """Grant ``caps`` in the bounding, effective and permitted sets (no duplicates)."""
    sets = _caps(spec)
    for cap in caps:
        for kind in _GRANTED:
            held = sets.setdefault(kind, [])
            if cap not in held:
                held.append(cap)


def drop_capabilities(spec: dict[str, Any], caps: Iterable[str]) -> None:
    """Remove ``caps`` from every set but ambient."""
    sets = _caps(spec)
    for cap in caps:
        for kind in (*_GRANTED, "inheritable"):
            if kind in sets:
                sets[kind] = [c for c in sets[kind] if c != cap]


def apply_cri_capabilities(spec: dict[str, Any], capability: Any, all_caps: Sequence[str]) -> None:
    """Apply a CRI ``Capability`` message the way containerd does.

    "ALL" in the add list first grants ``all_caps``, "ALL" in the drop list first clears every
    set; then the single names are added, then dropped. So ``add=[ALL], drop=[CHOWN]`` is
    everything but CAP_CHOWN and ``add=[SYS_ADMIN], drop=[ALL]`` is CAP_SYS_ADMIN alone.

    Args:
        spec: the spec to change.
        capability: an ``api_pb2.Capability``.
        all_caps: what "ALL" means.
    """
    added = [str(c) for c in capability.add_capabilities]
    dropped = [str(c) for c in capability.drop_capabilities]
    if any(c.upper() == "ALL" for c in added):
        set_capabilities(spec, all_caps)
    if any(c.upper() == "ALL" for c in dropped):
        set_capabilities(spec, [])
    add_capabilities(spec, [cap_name(c) for c in added if c.upper() != "ALL"])
    drop_capabilities(spec, [cap_name(c) for c in dropped if c.upper() != "ALL"])


def apply_ambient_capabilities(spec: dict[str, Any], names: Iterable[str]) -> None:
    """Raise CRI ``add_ambient_capabilities`` into the ambient set (replacing it).

    An ambient capability must also be permitted and inheritable, so each one is granted in
    every set. containerd 2.x ignores the field and always clears the ambient set; kubelet only
    sends it for pods that ask (KEP-2763), so honouring it changes nothing for other pods.
    """
    caps = [cap_name(n) for n in names]
    sets = _caps(spec)
    if not caps:
        sets.pop("ambient", None)
        return
    add_capabilities(spec, caps)
    sets["inheritable"] = list(caps)
    sets["ambient"] = list(caps)
