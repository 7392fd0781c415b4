"""Stats RPCs: ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats, and
the (empty) metric descriptor RPCs.

CPU and memory come from the shim's cgroup metrics (v1 or v2, whichever the shim reports),
converted as containerd does: working set = usage minus inactive file pages; the writable
layer's usage comes from the snapshotter.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from pycontainerd.api.containerd.cgroups.v1 import metrics_pb2 as v1
from pycontainerd.api.containerd.cgroups.v2 import metrics_pb2 as v2
from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2
from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri import state
from pycontainerd.errdefs import NotFound

if TYPE_CHECKING:
    from pycontainerd.cri.service import CRIService


def _decode(any_value: Any) -> Any:
    name = any_value.type_url.rsplit("/", 1)[-1]
    if name == "io.containerd.cgroups.v1.Metrics":
        return v1.Metrics.FromString(any_value.value)
    if name == "io.containerd.cgroups.v2.Metrics":
        return v2.Metrics.FromString(any_value.value)
    return None


def fill_usage(metrics: Any, cpu: api.CpuUsage, memory: api.MemoryUsage, now: int) -> None:
    """CPU and memory usage from cgroup metrics (v1 or v2)."""
    cpu.timestamp = memory.timestamp = now
    if isinstance(metrics, v1.Metrics):
        cpu.usage_core_nano_seconds.value = metrics.cpu.usage.total
        usage = metrics.memory.usage.usage
        inactive = metrics.memory.total_inactive_file
        memory.usage_bytes.value = usage
        memory.working_set_bytes.value = max(0, usage - inactive)
        memory.rss_bytes.value = metrics.memory.rss
        memory.page_faults.value = metrics.memory.pg_fault
        memory.major_page_faults.value = metrics.memory.pg_maj_fault
        limit = metrics.memory.usage.limit
        if 0 < limit < (1 << 62):
            memory.available_bytes.value = max(0, limit - memory.working_set_bytes.value)
    elif isinstance(metrics, v2.Metrics):
        cpu.usage_core_nano_seconds.value = metrics.cpu.usage_usec * 1000
        usage = metrics.memory.usage
        memory.usage_bytes.value = usage
        memory.working_set_bytes.value = max(0, usage - metrics.memory.inactive_file)
        memory.rss_bytes.value = metrics.memory.anon
        memory.page_faults.value = metrics.memory.pgfault
        memory.major_page_faults.value = metrics.memory.pgmajfault
        limit = metrics.memory.usage_limit
        if 0 < limit < (1 << 62):
            memory.available_bytes.value = max(0, limit - memory.working_set_bytes.value)


async def _task_metrics(svc: CRIService, task_id: str) -> Any:
    try:
        reply = await svc.tasks.call(
            svc.ctx, task_id, "Stats", shim_pb2.StatsRequest(id=task_id), shim_pb2.StatsResponse
        )
    except NotFound:
        return None
    assert isinstance(reply, shim_pb2.StatsResponse)
    if not reply.HasField("stats"):
        return None
    return _decode(reply.stats)


async def stats_of(svc: CRIService, ctr: state.CRIContainer) -> api.ContainerStats:
    """One container's stats (CPU and memory only while it runs)."""
    now = time.time_ns()
    out = api.ContainerStats()
    out.attributes.id = ctr.id
    out.attributes.metadata.CopyFrom(ctr.config.metadata)
    out.attributes.labels.update(ctr.config.labels)
    out.attributes.annotations.update(ctr.config.annotations)
    if ctr.status.state == api.CONTAINER_RUNNING:
        metrics = await _task_metrics(svc, ctr.id)
        if metrics is not None:
            fill_usage(metrics, out.cpu, out.memory, now)
    snapshotter = svc.metadata.snapshotters.get(ctr.snapshotter)
    if snapshotter is not None:
        with contextlib.suppress(NotFound):
            usage = snapshotter.usage(svc.ctx, ctr.id)  # metadata: one thread only
            out.writable_layer.timestamp = now
            out.writable_layer.fs_id.mountpoint = str(
                svc.root.parent / f"io.containerd.snapshotter.v1.{ctr.snapshotter}"
            )
            out.writable_layer.used_bytes.value = usage.size
            out.writable_layer.inodes_used.value = usage.inodes
    return out


async def container_stats(svc: CRIService, request: api.ContainerStatsRequest) -> api.ContainerStatsResponse:
    """Stats of one container."""
    return api.ContainerStatsResponse(stats=await stats_of(svc, svc.container(request.container_id)))


async def list_container_stats(
    svc: CRIService, request: api.ListContainerStatsRequest
) -> api.ListContainerStatsResponse:
    """Stats of the containers matching the filter."""
    flt = request.filter
    chosen = [
        c
        for c in svc.containers.values()
        if (not flt.id or c.id.startswith(flt.id))
        and (not flt.pod_sandbox_id or c.sandbox_id.startswith(flt.pod_sandbox_id))
        and state.matches_selector(c.config.labels, flt.label_selector)
    ]
    stats = await asyncio.gather(*(stats_of(svc, c) for c in chosen))
    return api.ListContainerStatsResponse(stats=list(stats))


async def pod_stats(svc: CRIService, pod: state.PodSandbox) -> api.PodSandboxStats:
    """A pod's stats: its containers' sums plus the pause process."""
    now = time.time_ns()
    out = api.PodSandboxStats()
    out.attributes.id = pod.id
    out.attributes.metadata.CopyFrom(pod.config.metadata)
    out.attributes.labels.update(pod.config.labels)
    out.attributes.annotations.update(pod.config.annotations)
    members = [c for c in svc.containers.values() if c.sandbox_id == pod.id]
    container_stats_list = await asyncio.gather(*(stats_of(svc, c) for c in members))
    out.linux.containers.extend(container_stats_list)
    cpu_total = sum(s.cpu.usage_core_nano_seconds.value for s in container_stats_list)
    mem_total = sum(s.memory.working_set_bytes.value for s in container_stats_list)
    if pod.state == api.SANDBOX_READY:
        metrics = await _task_metrics(svc, pod.id)
        if metrics is not None:
            pause_cpu, pause_mem = api.CpuUsage(), api.MemoryUsage()
            fill_usage(metrics, pause_cpu, pause_mem, now)
            cpu_total += pause_cpu.usage_core_nano_seconds.value
            mem_total += pause_mem.working_set_bytes.value
    out.linux.cpu.timestamp = out.linux.memory.timestamp = now
    out.linux.cpu.usage_core_nano_seconds.value = cpu_total
    out.linux.memory.working_set_bytes.value = mem_total
    out.linux.process.timestamp = now
    out.linux.process.process_count.value = sum(1 for c in members if c.status.state == api.CONTAINER_RUNNING) + (
        1 if pod.state == api.SANDBOX_READY else 0
    )
    return out


async def pod_sandbox_stats(svc: CRIService, request: api.PodSandboxStatsRequest) -> api.PodSandboxStatsResponse:
    """Stats of one pod."""
    return api.PodSandboxStatsResponse(stats=await pod_stats(svc, svc.sandbox(request.pod_sandbox_id)))


async def list_pod_sandbox_stats(
    svc: CRIService, request: api.ListPodSandboxStatsRequest
) -> api.ListPodSandboxStatsResponse:
    """Stats of the pods matching the filter."""
    flt = request.filter
    chosen = [
        p
        for p in svc.sandboxes.values()
        if (not flt.id or p.id.startswith(flt.id)) and state.matches_selector(p.config.labels, flt.label_selector)
    ]
    stats = await asyncio.gather(*(pod_stats(svc, p) for p in chosen))
    return api.ListPodSandboxStatsResponse(stats=list(stats))


LABEL_KEYS = ("pod", "namespace", "container", "id", "image")
# name, help, type, how to read it from ContainerStats
_METRICS: tuple[tuple[str, str, int, Any], ...] = (
    (
        "container_cpu_usage_seconds_total",
        "Cumulative CPU time consumed in seconds.",
        api.COUNTER,
        lambda s: s.cpu.usage_core_nano_seconds.value // 1_000_000_000,
    ),
    (
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        api.GAUGE,
        lambda s: s.memory.working_set_bytes.value,
    ),
    ("container_memory_usage_bytes", "Current memory usage in bytes.", api.GAUGE, lambda s: s.memory.usage_bytes.value),
    ("container_memory_rss", "Size of RSS in bytes.", api.GAUGE, lambda s: s.memory.rss_bytes.value),
    (
        "container_fs_usage_bytes",
        "Number of bytes consumed by the container's writable layer.",
        api.GAUGE,
        lambda s: s.writable_layer.used_bytes.value,
    ),
)


async def list_metric_descriptors(
    svc: CRIService, request: api.ListMetricDescriptorsRequest
) -> api.ListMetricDescriptorsResponse:
    """The metrics ListPodSandboxMetrics reports (cAdvisor's names)."""
    return api.ListMetricDescriptorsResponse(
        descriptors=[api.MetricDescriptor(name=n, help=h, label_keys=LABEL_KEYS) for n, h, _, _ in _METRICS]
    )


async def list_pod_sandbox_metrics(
    svc: CRIService, request: api.ListPodSandboxMetricsRequest
) -> api.ListPodSandboxMetricsResponse:
    """Per-container metrics of every ready pod, from the same figures as the stats RPCs."""
    out = api.ListPodSandboxMetricsResponse()
    now = time.time_ns()
    for pod in list(svc.sandboxes.values()):
        if pod.state != api.SANDBOX_READY:
            continue
        entry = out.pod_metrics.add(pod_sandbox_id=pod.id)
        for ctr in [c for c in svc.containers.values() if c.sandbox_id == pod.id]:
            stats = await stats_of(svc, ctr)
            labels = [
                pod.config.metadata.name,
                pod.config.metadata.namespace,
                ctr.config.metadata.name,
                ctr.id,
                ctr.image_ref,
            ]
            metrics = entry.container_metrics.add(container_id=ctr.id)
            for name, _help, kind, read in _METRICS:
                metric = metrics.metrics.add(name=name, timestamp=now, metric_type=kind, label_values=labels)
                metric.value.value = int(read(stats))
    return out
