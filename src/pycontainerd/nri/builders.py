"""Constructors for the NRI messages a runtime fills from its own state.

The CRI plugin describes pods and containers to NRI with :func:`pod_sandbox` and
:func:`container`, using plain Python values; :func:`linux_resources` builds the resources
message from OCI-style numbers. Unset (None) values stay unset on the wire, which NRI
reads as "not known / not set".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .api import pb

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["container", "hook", "linux_resources", "mount", "pod_sandbox"]

ContainerState = pb.ContainerState
"""``CONTAINER_UNKNOWN``, ``CONTAINER_CREATED``, ``CONTAINER_PAUSED``, ``CONTAINER_RUNNING``, ``CONTAINER_STOPPED``."""

_STATES = {
    "unknown": pb.CONTAINER_UNKNOWN,
    "created": pb.CONTAINER_CREATED,
    "paused": pb.CONTAINER_PAUSED,
    "running": pb.CONTAINER_RUNNING,
    "stopped": pb.CONTAINER_STOPPED,
    "exited": pb.CONTAINER_STOPPED,
}


def linux_resources(
    *,
    cpu_shares: int | None = None,
    cpu_quota: int | None = None,
    cpu_period: int | None = None,
    cpu_realtime_runtime: int | None = None,
    cpu_realtime_period: int | None = None,
    cpuset_cpus: str = "",
    cpuset_mems: str = "",
    memory_limit: int | None = None,
    memory_reservation: int | None = None,
    memory_swap: int | None = None,
    memory_swappiness: int | None = None,
    hugepage_limits: Mapping[str, int] | None = None,
    unified: Mapping[str, str] | None = None,
    pids_limit: int | None = None,
    blockio_class: str | None = None,
    rdt_class: str | None = None,
) -> pb.LinuxResources:
    """A ``LinuxResources`` message; every None argument is left unset."""
    res = pb.LinuxResources()
    for field, value in (
        ("shares", cpu_shares),
        ("quota", cpu_quota),
        ("period", cpu_period),
        ("realtime_runtime", cpu_realtime_runtime),
        ("realtime_period", cpu_realtime_period),
    ):
        if value is not None:
            getattr(res.cpu, field).value = value
    res.cpu.cpus = cpuset_cpus
    res.cpu.mems = cpuset_mems
    for field, value in (
        ("limit", memory_limit),
        ("reservation", memory_reservation),
        ("swap", memory_swap),
        ("swappiness", memory_swappiness),
    ):
        if value is not None:
            getattr(res.memory, field).value = value
    for size, limit in (hugepage_limits or {}).items():
        res.hugepage_limits.add(page_size=size, limit=limit)
    res.unified.update(unified or {})
    if pids_limit is not None:
        res.pids.limit = pids_limit
    if blockio_class is not None:
        res.blockio_class.value = blockio_class
    if rdt_class is not None:
        res.rdt_class.value = rdt_class
    return res


def pod_sandbox(
    *,
    id: str,
    name: str = "",
    uid: str = "",
    namespace: str = "",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    runtime_handler: str = "",
    pid: int = 0,
    ips: Iterable[str] = (),
    netns_path: str = "",
    namespaces: Mapping[str, str] | None = None,
    cgroup_parent: str = "",
    cgroups_path: str = "",
    pod_overhead: pb.LinuxResources | None = None,
    pod_resources: pb.LinuxResources | None = None,
    resources: pb.LinuxResources | None = None,
) -> pb.PodSandbox:
    """A ``PodSandbox`` message.

    Args:
        id: Sandbox ID.
        name: Pod name (CRI metadata).
        uid: Pod UID.
        namespace: Kubernetes namespace.
        labels: Pod labels.
        annotations: Pod annotations.
        runtime_handler: The CRI runtime handler.
        pid: PID of the sandbox (pause) process.
        ips: Pod IP addresses.
        netns_path: Path of the network namespace; shorthand for ``namespaces={"network": path}``.
        namespaces: Namespace type -> path of the pod's namespaces.
        cgroup_parent: The pod's cgroup parent.
        cgroups_path: The sandbox container's cgroups path.
        pod_overhead: Pod overhead resources.
        pod_resources: Sum of the pod's container resources.
        resources: The sandbox container's resources.
    """
    pod = pb.PodSandbox(
        id=id, name=name, uid=uid, namespace=namespace, runtime_handler=runtime_handler, pid=pid, ips=list(ips)
    )
    pod.labels.update(labels or {})
    pod.annotations.update(annotations or {})
    ns = dict(namespaces or {})
    if netns_path:
        ns.setdefault("network", netns_path)
    linux = pod.linux
    linux.cgroup_parent = cgroup_parent
    linux.cgroups_path = cgroups_path
    for kind, path in ns.items():
        linux.namespaces.add(type=kind, path=path)
    for field, value in (("pod_overhead", pod_overhead), ("pod_resources", pod_resources), ("resources", resources)):
        if value is not None:
            getattr(linux, field).CopyFrom(value)
    return pod


def mount(destination: str, source: str = "", type: str = "bind", options: Iterable[str] = ()) -> pb.Mount:
    """A ``Mount`` message."""
    return pb.Mount(destination=destination, source=source, type=type, options=list(options))


def hook(path: str, args: Iterable[str] = (), env: Iterable[str] = (), timeout: int | None = None) -> pb.Hook:
    """A ``Hook`` message (``timeout`` in seconds)."""
    h = pb.Hook(path=path, args=list(args), env=list(env))
    if timeout is not None:
        h.timeout.value = timeout
    return h


def container(
    *,
    id: str,
    pod_sandbox_id: str,
    name: str = "",
    state: str | int = "unknown",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    args: Iterable[str] = (),
    env: Iterable[str] = (),
    mounts: Iterable[pb.Mount | Mapping[str, Any]] = (),
    hooks: pb.Hooks | None = None,
    resources: pb.LinuxResources | None = None,
    oom_score_adj: int | None = None,
    cgroups_path: str = "",
    namespaces: Mapping[str, str] | None = None,
    devices: Iterable[pb.LinuxDevice] = (),
    pid: int = 0,
    rlimits: Iterable[tuple[str, int, int]] = (),
    created_at: int = 0,
    started_at: int = 0,
    finished_at: int = 0,
    exit_code: int = 0,
    image: str = "",
) -> pb.Container:
    """A ``Container`` message.

    Args:
        id: Container ID.
        pod_sandbox_id: ID of its pod.
        name: Container name.
        state: ``"created"``, ``"running"``, ``"paused"``, ``"stopped"`` (or the enum value).
        labels: Container labels.
        annotations: Container (OCI) annotations.
        args: Process arguments.
        env: ``KEY=VALUE`` environment.
        mounts: ``Mount`` messages or OCI mount dicts (``destination``, ``source``, ``type``, ``options``).
        hooks: OCI hooks.
        resources: Linux resources (see :func:`linux_resources`).
        oom_score_adj: The OOM score adjustment, if set.
        cgroups_path: The container's cgroups path.
        namespaces: Namespace type -> path ("" for a new namespace).
        devices: Linux devices.
        pid: PID of the container's init process, once started.
        rlimits: ``(type, hard, soft)`` triples.
        created_at: Creation time, nanoseconds since the epoch.
        started_at: Start time, nanoseconds since the epoch.
        finished_at: Exit time, nanoseconds since the epoch.
        exit_code: Exit status, once stopped.
        image: Image reference.
    """
    ctr = pb.Container(
        id=id,
        pod_sandbox_id=pod_sandbox_id,
        name=name,
        state=_STATES[state.lower()] if isinstance(state, str) else state,
        args=list(args),
        env=list(env),
        pid=pid,
        created_at=created_at,
        started_at=started_at,
        finished_at=finished_at,
        exit_code=exit_code,
    )
    ctr.labels.update(labels or {})
    ctr.annotations.update(annotations or {})
    for m in mounts:
        if isinstance(m, pb.Mount):
            ctr.mounts.append(m)
        else:
            ctr.mounts.append(mount(m["destination"], m.get("source", ""), m.get("type", ""), m.get("options", ())))
    if hooks is not None:
        ctr.hooks.CopyFrom(hooks)
    if resources is not None:
        ctr.linux.resources.CopyFrom(resources)
    if oom_score_adj is not None:
        ctr.linux.oom_score_adj.value = oom_score_adj
    ctr.linux.cgroups_path = cgroups_path
    for kind, path in (namespaces or {}).items():
        ctr.linux.namespaces.add(type=kind, path=path)
    ctr.linux.devices.extend(devices)
    for kind, hard, soft in rlimits:
        ctr.rlimits.add(type=kind, hard=hard, soft=soft)
    if image:
        ctr.image.name = image
    return ctr
