"""Applying a merged :class:`ContainerAdjustment` to an OCI runtime spec (a JSON-shaped dict).

This is what containerd does with NRI's ``runtime-tools/generate`` helper after the
plugins have answered CreateContainer. Semantics worth knowing:

* A key, env name, mount destination, device path or namespace type starting with ``-``
  removes that entry; annotations and sysctls also accept a new value in the same answer.
* An env variable that exists keeps its position when its value changes; new ones are appended.
* A mount replaces any mount at the same destination, and whenever mounts change the whole
  list is re-sorted by depth of the destination (then by name), as containerd does. A
  mount option ``rshared``/``rslave`` raises the rootfs propagation accordingly.
* A memory limit also sets the swap limit to the same value (the Go generator does this).
* Block I/O and RDT *classes* are names resolved by the runtime: pass ``resolve_blockio``
  / ``resolve_rdt``; without them (containerd's default) the class is ignored.
* A pids limit of ``-1`` means unlimited and leaves ``pids`` without a ``limit``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

from .api import is_marked_for_removal, pb

Spec = dict[str, Any]
Resolver = Callable[[str], dict[str, Any] | None]

_HOOK_KEYS = (
    ("prestart", "prestart"),
    ("create_runtime", "createRuntime"),
    ("create_container", "createContainer"),
    ("start_container", "startContainer"),
    ("poststart", "poststart"),
    ("poststop", "poststop"),
)
_MEMORY_KEYS = (
    ("reservation", "reservation"),
    ("swap", "swap"),
    ("kernel", "kernel"),
    ("kernel_tcp", "kernelTCP"),
    ("swappiness", "swappiness"),
    ("disable_oom_killer", "disableOOMKiller"),
    ("use_hierarchy", "useHierarchy"),
)
_CPU_KEYS = (
    ("shares", "shares"),
    ("quota", "quota"),
    ("period", "period"),
    ("realtime_runtime", "realtimeRuntime"),
    ("realtime_period", "realtimePeriod"),
)
_IOPRIO_CLASSES = {1: "IOPRIO_CLASS_RT", 2: "IOPRIO_CLASS_BE", 3: "IOPRIO_CLASS_IDLE"}


class SpecAdjustError(Exception):
    """The adjustment cannot be applied to this spec."""


def _sub(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        value = parent[key] = {}
    return value


def _list(parent: dict[str, Any], key: str) -> list[Any]:
    value = parent.get(key)
    if not isinstance(value, list):
        value = parent[key] = []
    return value


def apply_adjustment(
    spec: Spec,
    adjustment: pb.ContainerAdjustment | None,
    *,
    resolve_blockio: Resolver | None = None,
    resolve_rdt: Resolver | None = None,
) -> None:
    """Apply ``adjustment`` to ``spec`` in place.

    Args:
        spec: An OCI runtime spec as a dict (``process``, ``mounts``, ``linux``...).
        adjustment: The merged adjustment from :meth:`Adaptation.create_container`.
        resolve_blockio: Maps a block I/O class name to a ``linux.resources.blockIO`` dict.
        resolve_rdt: Maps an RDT class name to a ``linux.intelRdt`` dict.

    Raises:
        SpecAdjustError: If a class cannot be resolved.
    """
    if adjustment is None:
        return
    adj = adjustment
    for key, value in adj.annotations.items():
        name, removed = is_marked_for_removal(key)
        annotations = _sub(spec, "annotations")
        if removed:
            annotations.pop(name, None)
        else:
            annotations[key] = value
    process = _sub(spec, "process")
    _apply_env(process, adj.env)
    if adj.args:
        process["args"] = list(adj.args)
    for field, key in _HOOK_KEYS:
        for hook in getattr(adj.hooks, field):
            _list(_sub(spec, "hooks"), key).append(_hook(hook))
    lin = adj.linux
    linux = _sub(spec, "linux")
    for dev in lin.devices:
        path, removed = is_marked_for_removal(dev.path)
        linux["devices"] = [d for d in linux.get("devices") or [] if d.get("path") != path]
        if removed:
            continue
        linux["devices"].append(_device(dev))
        rule: dict[str, Any] = {"allow": True, "type": dev.type, "major": dev.major, "minor": dev.minor}
        rule["access"] = "rwm" if dev.type == "b" else "rw"
        _list(_sub(linux, "resources"), "devices").append(rule)
    if lin.cgroups_path:
        linux["cgroupsPath"] = lin.cgroups_path
    if lin.HasField("oom_score_adj"):
        process["oomScoreAdj"] = lin.oom_score_adj.value
    if lin.HasField("io_priority"):
        cls = _IOPRIO_CLASSES.get(getattr(lin.io_priority, "class"))
        if cls:
            process["ioPriority"] = {"class": cls, "priority": lin.io_priority.priority}
        else:
            process.pop("ioPriority", None)
    if lin.HasField("scheduler"):
        process["scheduler"] = _scheduler(lin.scheduler)
    if lin.HasField("seccomp_policy"):
        linux["seccomp"] = _seccomp(lin.seccomp_policy)
    for ns in lin.namespaces:
        kind, removed = is_marked_for_removal(ns.type)
        namespaces = [n for n in linux.get("namespaces") or [] if n.get("type") != kind]
        if not removed:
            namespaces.append({"type": kind, "path": ns.path} if ns.path else {"type": kind})
        linux["namespaces"] = namespaces
    for key, value in lin.sysctl.items():
        name, removed = is_marked_for_removal(key)
        if removed:
            _sub(linux, "sysctl").pop(name, None)
        else:
            _sub(linux, "sysctl")[key] = value
    for key, netdev in lin.net_devices.items():
        name, removed = is_marked_for_removal(key)
        if removed:
            _sub(linux, "netDevices").pop(name, None)
        else:
            _sub(linux, "netDevices")[key] = {"name": netdev.name} if netdev.name else {}
    if lin.HasField("memory_policy"):
        linux["memoryPolicy"] = _memory_policy(lin.memory_policy)
    if lin.HasField("resources"):
        _apply_resources(linux, lin.resources, resolve_blockio, resolve_rdt)
    if lin.HasField("rdt"):
        _apply_rdt(linux, lin.rdt)
    _apply_mounts(spec, linux, adj.mounts)
    for rlimit in adj.rlimits:
        _list(process, "rlimits").append({"type": rlimit.type, "hard": rlimit.hard, "soft": rlimit.soft})


def _apply_env(process: dict[str, Any], env: Any) -> None:
    if not env:
        return
    changes = {is_marked_for_removal(e.key)[0]: e for e in env}
    pending = dict(changes)
    result: list[str] = []
    for entry in process.get("env") or []:
        name, sep, _ = entry.partition("=")
        if not sep:
            continue  # malformed entries are dropped, as the Go generator does
        change = pending.pop(name, None)
        if change is None:
            result.append(entry)
        elif not change.key.startswith("-"):
            result.append(f"{change.key}={change.value}")
    for e in env:
        if not e.key.startswith("-") and e.key in pending:
            result.append(f"{e.key}={e.value}")
            del pending[e.key]
    process["env"] = result


def _apply_resources(
    linux: dict[str, Any], res: pb.LinuxResources, resolve_blockio: Resolver | None, resolve_rdt: Resolver | None
) -> None:
    resources = _sub(linux, "resources")
    if res.HasField("cpu"):
        cpu = _sub(resources, "cpu")
        for field, key in _CPU_KEYS:
            if res.cpu.HasField(field):
                cpu[key] = getattr(res.cpu, field).value
        if res.cpu.cpus:
            cpu["cpus"] = res.cpu.cpus
        if res.cpu.mems:
            cpu["mems"] = res.cpu.mems
    if res.HasField("memory"):
        memory = _sub(resources, "memory")
        if limit := res.memory.limit.value:
            memory["limit"] = limit
            memory["swap"] = limit
        for field, key in _MEMORY_KEYS:
            if res.memory.HasField(field):
                memory[key] = getattr(res.memory, field).value
    for hp in res.hugepage_limits:
        limits = [x for x in _list(resources, "hugepageLimits") if x.get("pageSize") != hp.page_size]
        limits.append({"pageSize": hp.page_size, "limit": hp.limit})
        resources["hugepageLimits"] = limits
    for key, value in res.unified.items():
        _sub(resources, "unified")[key] = value
    if res.HasField("pids"):
        pids = _sub(resources, "pids")
        if res.pids.limit > -1:
            pids["limit"] = res.pids.limit
    for rule in res.devices:
        entry: dict[str, Any] = {"allow": rule.allow, "type": rule.type, "access": rule.access}
        if rule.HasField("major"):
            entry["major"] = rule.major.value
        if rule.HasField("minor"):
            entry["minor"] = rule.minor.value
        _list(resources, "devices").append(entry)
    if res.HasField("blockio_class") and resolve_blockio is not None:
        name = res.blockio_class.value
        if not name:
            resources.pop("blockIO", None)
        elif (blockio := resolve_blockio(name)) is None:
            raise SpecAdjustError(f"failed to adjust BlockIO class in OCI Spec: unknown class {name!r}")
        else:
            resources["blockIO"] = blockio
    if res.HasField("rdt_class") and resolve_rdt is not None:
        name = res.rdt_class.value
        if not name:
            linux.pop("intelRdt", None)
        elif (rdt := resolve_rdt(name)) is None:
            raise SpecAdjustError(f"failed to adjust RDT class in OCI Spec: unknown class {name!r}")
        else:
            linux["intelRdt"] = rdt


def _apply_rdt(linux: dict[str, Any], rdt: pb.LinuxRdt) -> None:
    if rdt.remove:
        linux.pop("intelRdt", None)
    if rdt.HasField("clos_id"):
        _sub(linux, "intelRdt")["closID"] = rdt.clos_id.value
    if rdt.HasField("schemata"):
        _sub(linux, "intelRdt")["schemata"] = list(rdt.schemata.value)
    if rdt.HasField("enable_monitoring"):
        _sub(linux, "intelRdt")["enableMonitoring"] = rdt.enable_monitoring.value


def _apply_mounts(spec: Spec, linux: dict[str, Any], mounts: Any) -> None:
    if not mounts:
        return
    current: list[dict[str, Any]] = list(spec.get("mounts") or [])
    for m in mounts:
        dest, removed = is_marked_for_removal(m.destination)
        current = [x for x in current if x.get("destination") != dest]
        if removed:
            continue
        entry: dict[str, Any] = {"destination": m.destination, "type": m.type, "source": m.source}
        if m.options:
            entry["options"] = list(m.options)
        propagation = next((o for o in reversed(m.options) if o in ("rprivate", "rshared", "rslave")), "")
        if propagation == "rshared":
            linux["rootfsPropagation"] = "rshared"
        elif propagation == "rslave" and linux.get("rootfsPropagation") not in ("rshared", "rslave"):
            linux["rootfsPropagation"] = "rslave"
        current.append(entry)
    current.sort(key=lambda x: (_depth(x.get("destination", "")), x.get("destination", "")))
    spec["mounts"] = current


def _depth(path: str) -> int:
    # Separators in the cleaned path, exactly as the Go sort counts them.
    return posixpath.normpath(path).count("/")


def _hook(hook: pb.Hook) -> dict[str, Any]:
    out: dict[str, Any] = {"path": hook.path}
    if hook.args:
        out["args"] = list(hook.args)
    if hook.env:
        out["env"] = list(hook.env)
    if hook.HasField("timeout"):
        out["timeout"] = hook.timeout.value
    return out


def _device(dev: pb.LinuxDevice) -> dict[str, Any]:
    out: dict[str, Any] = {"path": dev.path, "type": dev.type, "major": dev.major, "minor": dev.minor}
    if dev.HasField("file_mode"):
        out["fileMode"] = dev.file_mode.value
    if dev.HasField("uid"):
        out["uid"] = dev.uid.value
    if dev.HasField("gid"):
        out["gid"] = dev.gid.value
    return out


def _scheduler(sch: pb.LinuxScheduler) -> dict[str, Any]:
    out: dict[str, Any] = {"policy": pb.LinuxSchedulerPolicy.Name(sch.policy)}
    for key in ("nice", "priority", "runtime", "deadline", "period"):
        if value := getattr(sch, key):
            out[key] = value
    if sch.flags:
        out["flags"] = [pb.LinuxSchedulerFlag.Name(f) for f in sch.flags]
    return out


def _seccomp(policy: pb.LinuxSeccomp) -> dict[str, Any]:
    out: dict[str, Any] = {"defaultAction": policy.default_action}
    if policy.HasField("default_errno"):
        out["defaultErrnoRet"] = policy.default_errno.value
    if policy.architectures:
        out["architectures"] = list(policy.architectures)
    if policy.flags:
        out["flags"] = list(policy.flags)
    if policy.listener_path:
        out["listenerPath"] = policy.listener_path
    if policy.listener_metadata:
        out["listenerMetadata"] = policy.listener_metadata
    syscalls = []
    for sc in policy.syscalls:
        entry: dict[str, Any] = {"names": list(sc.names), "action": sc.action}
        if sc.HasField("errno_ret"):
            entry["errnoRet"] = sc.errno_ret.value
        if sc.args:
            entry["args"] = [{"index": a.index, "value": a.value, "valueTwo": a.value_two, "op": a.op} for a in sc.args]
        syscalls.append(entry)
    if syscalls:
        out["syscalls"] = syscalls
    return out


def _memory_policy(mp: pb.LinuxMemoryPolicy) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": pb.MpolMode.Name(mp.mode), "nodes": mp.nodes}
    if mp.flags:
        out["flags"] = [pb.MpolFlag.Name(f) for f in mp.flags]
    return out
