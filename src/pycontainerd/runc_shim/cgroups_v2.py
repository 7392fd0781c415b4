"""Task metrics on the unified (cgroup v2) hierarchy, as ``io.containerd.cgroups.v2.Metrics``.

Read from the container's cgroup directory: ``pids.*``, ``cpu.stat``, ``memory.current`` /
``memory.max`` / ``memory.swap.*`` / ``memory.stat`` / ``memory.events``, ``io.stat``,
``hugetlb.<size>.*`` and ``rdma.*``. Limits spelled ``max`` are the largest uint64, as
containerd reports them. Files a kernel does not have are skipped.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pycontainerd.api.containerd.cgroups.v2 import metrics_pb2 as pb

if TYPE_CHECKING:
    from google.protobuf.message import Message

UNIFIED_ROOTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")
MAX = 2**64 - 1
TYPE_URL = "io.containerd.cgroups.v2.Metrics"


def _read(directory: str, name: str) -> str | None:
    try:
        with open(os.path.join(directory, name)) as fh:
            return fh.read()
    except OSError:
        return None


def _uint(text: str | None) -> int:
    if text is None:
        return 0
    text = text.strip()
    if text == "max":
        return MAX
    try:
        return int(text)
    except ValueError:
        return 0


def _flat(text: str | None) -> dict[str, int]:
    """``key value`` lines."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if key:
            out[key] = _uint(value)
    return out


def unified_path(pid: int) -> str | None:
    """The cgroup v2 directory of ``pid``, or None when it is not in a unified hierarchy."""
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    relative = next((line[3:] for line in lines if line.startswith("0::")), None)
    if relative is None:
        return None
    for root in UNIFIED_ROOTS:
        candidate = os.path.join(root, relative.lstrip("/"))
        if os.path.exists(os.path.join(candidate, "cgroup.controllers")):
            return candidate
    return None


def is_unified_only(pid: int) -> bool:
    """Whether ``pid`` lives in a pure cgroup v2 system (no v1 controller lines)."""
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            lines = [line for line in fh.read().splitlines() if line]
    except OSError:
        return False
    return bool(lines) and all(line.startswith("0::") for line in lines)


MEMORY_STAT_FIELDS = tuple(f.name for f in pb.MemoryStat.DESCRIPTOR.fields if f.name not in (
    "usage", "usage_limit", "swap_usage", "swap_limit"))  # fmt: skip


def metrics_from_dir(directory: str) -> pb.Metrics:
    """Metrics of the cgroup at ``directory``."""
    out = pb.Metrics()
    out.pids.current = _uint(_read(directory, "pids.current"))
    out.pids.limit = _uint(_read(directory, "pids.max"))
    cpu = _flat(_read(directory, "cpu.stat"))
    for name in ("usage_usec", "user_usec", "system_usec", "nr_periods", "nr_throttled", "throttled_usec"):
        setattr(out.cpu, name, cpu.get(name, 0))
    stat = _flat(_read(directory, "memory.stat"))
    for name in MEMORY_STAT_FIELDS:
        if name in stat:
            setattr(out.memory, name, stat[name])
    out.memory.usage = _uint(_read(directory, "memory.current"))
    out.memory.usage_limit = _uint(_read(directory, "memory.max"))
    out.memory.swap_usage = _uint(_read(directory, "memory.swap.current"))
    out.memory.swap_limit = _uint(_read(directory, "memory.swap.max"))
    events = _flat(_read(directory, "memory.events"))
    for name in ("low", "high", "max", "oom", "oom_kill"):
        setattr(out.memory_events, name, events.get(name, 0))
    for line in (_read(directory, "io.stat") or "").splitlines():
        device, *pairs = line.split()
        major, _, minor = device.partition(":")
        entry = out.io.usage.add(major=_uint(major), minor=_uint(minor))
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key in ("rbytes", "wbytes", "rios", "wios"):
                setattr(entry, key, _uint(value))
    sizes = sorted(
        {n.split(".")[1] for n in _listdir(directory) if n.startswith("hugetlb.") and n.endswith(".current")}
    )
    for size in sizes:
        out.hugetlb.add(
            pagesize=size,
            current=_uint(_read(directory, f"hugetlb.{size}.current")),
            max=_uint(_read(directory, f"hugetlb.{size}.max")),
        )
    for kind, target in (("rdma.current", out.rdma.current), ("rdma.max", out.rdma.limit)):
        for line in (_read(directory, kind) or "").splitlines():
            device, *pairs = line.split()
            values = dict(p.partition("=")[::2] for p in pairs)
            target.add(
                device=device,
                hca_handles=_uint(values.get("hca_handle")) & 0xFFFFFFFF,
                hca_objects=_uint(values.get("hca_object")) & 0xFFFFFFFF,
            )
    return out


def _listdir(directory: str) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError:
        return []


def task_metrics(pid: int) -> Message:
    """The metrics of the cgroup(s) ``pid`` is in: v2 on a unified-only system, else v1."""
    if is_unified_only(pid):
        directory = unified_path(pid)
        if directory is not None:
            return metrics_from_dir(directory)
    from pycontainerd.runc_shim.cgroups import metrics as v1_metrics

    return v1_metrics(pid)
