"""Task metrics read from the cgroup v1 files of the container's init process.

The result is ``io.containerd.cgroups.v1.Metrics``, what Go shims return and ``ctr tasks
metrics`` prints. Controllers that are absent (cgroup v2-only hosts) are left empty.
"""

from __future__ import annotations

import os

from pycontainerd.api.containerd.cgroups.v1 import metrics_pb2 as pb

V1_ROOT = "/sys/fs/cgroup"
NS_PER_TICK = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
_MEMORY_STAT_FIELDS = {f.name for f in pb.MemoryStat.DESCRIPTOR.fields if f.type == f.TYPE_UINT64}


def _paths(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            for line in fh:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for controller in controllers.split(","):
                    if controller:
                        out[controller] = path
    except OSError:
        pass
    return out


def _read(directory: str, name: str) -> str | None:
    try:
        with open(os.path.join(directory, name)) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _uint(text: str | None) -> int:
    if not text or text == "max":
        return 0
    try:
        return max(0, int(text.split()[0]))
    except ValueError:
        return 0


def _dir(controller: str, paths: dict[str, str]) -> str | None:
    path = paths.get(controller)
    if path is None:
        return None
    directory = os.path.join(V1_ROOT, controller, path.lstrip("/"))
    return directory if os.path.isdir(directory) else None


def metrics(pid: int) -> pb.Metrics:
    """The current metrics of the cgroups ``pid`` is in."""
    paths = _paths(pid)
    out = pb.Metrics()
    if (pids := _dir("pids", paths)) is not None:
        out.pids.current = _uint(_read(pids, "pids.current"))
        out.pids.limit = _uint(_read(pids, "pids.max"))
    if (cpu := _dir("cpuacct", paths)) is not None:
        out.cpu.usage.total = _uint(_read(cpu, "cpuacct.usage"))
        for line in (_read(cpu, "cpuacct.stat") or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "user":
                out.cpu.usage.user = _uint(value) * NS_PER_TICK
            elif key == "system":
                out.cpu.usage.kernel = _uint(value) * NS_PER_TICK
        out.cpu.usage.per_cpu.extend(_uint(v) for v in (_read(cpu, "cpuacct.usage_percpu") or "").split())
    if (mem := _dir("memory", paths)) is not None:
        for line in (_read(mem, "memory.stat") or "").splitlines():
            key, _, value = line.partition(" ")
            if key in _MEMORY_STAT_FIELDS:
                setattr(out.memory, key, _uint(value))
        for entry, prefix in (
            (out.memory.usage, "memory"),
            (out.memory.swap, "memory.memsw"),
            (out.memory.kernel, "memory.kmem"),
            (out.memory.kernel_tcp, "memory.kmem.tcp"),
        ):
            entry.usage = _uint(_read(mem, f"{prefix}.usage_in_bytes"))
            entry.limit = _uint(_read(mem, f"{prefix}.limit_in_bytes"))
            entry.max = _uint(_read(mem, f"{prefix}.max_usage_in_bytes"))
            entry.failcnt = _uint(_read(mem, f"{prefix}.failcnt"))
        for line in (_read(mem, "memory.oom_control") or "").splitlines():
            key, _, value = line.partition(" ")
            if key in ("oom_kill_disable", "under_oom", "oom_kill"):
                setattr(out.memory_oom_control, key, _uint(value))
    return out
