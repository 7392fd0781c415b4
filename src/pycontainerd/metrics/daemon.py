"""The daemon's metrics: gRPC calls, objects in the stores, tasks' cgroups, the process itself.

Names follow what containerd and go-grpc-prometheus export (``grpc_server_handled_total``,
``grpc_server_handling_seconds``, ``container_memory_usage_bytes``...), so existing dashboards
find them; ``pycontainerd_*`` families are our own.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from typing import TYPE_CHECKING, Any

from pycontainerd.metrics.registry import Counter, Gauge, Histogram, LabelValues, Registry

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pycontainerd.plugin.registration import PluginSet

PAGE = os.sysconf("SC_PAGE_SIZE")


def split_method(full: str) -> tuple[str, str]:
    """``/containerd.services.images.v1.Images/List`` -> (service, method)."""
    service, _, method = full.strip("/").rpartition("/")
    return service, method


class DaemonMetrics:
    """Everything ``/v1/metrics`` serves for one daemon."""

    def __init__(self, histogram: bool = False) -> None:
        self.registry = Registry()
        self.started_at = time.time()
        labels = ("grpc_service", "grpc_method", "grpc_type")
        self._started = Counter("grpc_server_started_total", "RPCs started on the server.", labels)
        self._handled = Counter(
            "grpc_server_handled_total", "RPCs completed on the server, by code.", (*labels, "grpc_code")
        )
        self.registry.add(self._started)
        self.registry.add(self._handled)
        self._latency: Histogram | None = None
        if histogram:
            self._latency = Histogram("grpc_server_handling_seconds", "Time to handle an RPC, in seconds.", labels)
            self.registry.add(self._latency)
        self.registry.add(Gauge("pycontainerd_uptime_seconds", "Seconds since the daemon started.", (), self._uptime))
        self.registry.add(Gauge("process_resident_memory_bytes", "Resident memory of the daemon.", (), self._rss))
        self.registry.add(Gauge("process_open_fds", "Open file descriptors of the daemon.", (), self._fds))
        self.registry.add(
            Gauge("process_cpu_seconds_total", "CPU time used by the daemon, user and system.", (), self._cpu)
        )

    def started(self, full_method: str, kind: str) -> None:
        service, method = split_method(full_method)
        self._started.inc(service, method, kind)

    def handled(self, full_method: str, kind: str, code: str, seconds: float) -> None:
        service, method = split_method(full_method)
        self._handled.inc(service, method, kind, code)
        if self._latency is not None:
            self._latency.observe(seconds, service, method, kind)

    def watch_plugins(self, plugins: PluginSet) -> None:
        """Add the gauges read from the loaded plugins (metadata stores, the task manager)."""
        from pycontainerd.plugin import types

        try:
            metadata = plugins.first(types.METADATA)
        except Exception:
            metadata = None
        if metadata is not None:
            self.registry.add(
                Gauge(
                    "pycontainerd_objects",
                    "Objects in the metadata store.",
                    ("namespace", "kind"),
                    lambda: _objects(metadata),
                )
            )
        try:
            tasks = plugins.first(types.RUNTIME_V2)
        except Exception:
            tasks = None
        if tasks is not None:
            self.registry.add(
                Gauge("pycontainerd_tasks", "Tasks with a live shim.", ("namespace",), lambda: _task_counts(tasks))
            )
            self.registry.add(
                Gauge(
                    "container_memory_usage_bytes",
                    "Memory usage of each task's cgroup.",
                    ("container_id", "namespace"),
                    lambda: _cgroup_values(tasks, "memory"),
                )
            )
            self.registry.add(
                Gauge(
                    "container_cpu_total_nanoseconds",
                    "CPU time used by each task's cgroup.",
                    ("container_id", "namespace"),
                    lambda: _cgroup_values(tasks, "cpu"),
                )
            )

    def render(self) -> str:
        return self.registry.render()

    def _uptime(self) -> Iterable[tuple[LabelValues, float]]:
        yield (), time.time() - self.started_at

    @staticmethod
    def _rss() -> Iterable[tuple[LabelValues, float]]:
        with open("/proc/self/statm") as fh:
            yield (), int(fh.read().split()[1]) * PAGE

    @staticmethod
    def _fds() -> Iterable[tuple[LabelValues, float]]:
        yield (), len(os.listdir("/proc/self/fd"))

    @staticmethod
    def _cpu() -> Iterable[tuple[LabelValues, float]]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        yield (), usage.ru_utime + usage.ru_stime


def _objects(metadata: object) -> Iterable[tuple[LabelValues, float]]:
    db = metadata.db  # type: ignore[attr-defined]
    with db.read() as tx:
        for table, kind in (("images", "image"), ("containers", "container"), ("content", "content"),
                            ("leases", "lease"), ("sandboxes", "sandbox")):  # fmt: skip
            for ns, count in tx.execute(f"SELECT namespace, COUNT(*) FROM {table} GROUP BY namespace").fetchall():
                yield (ns, kind), count
        for ns, snapshotter, count in tx.execute(
            "SELECT namespace, snapshotter, COUNT(*) FROM snapshots GROUP BY namespace, snapshotter"
        ).fetchall():
            yield (ns, f"snapshot/{snapshotter}"), count


def _task_counts(tasks: object) -> Iterable[tuple[LabelValues, float]]:
    counts: dict[str, int] = {}
    for task in tasks._tasks.values():  # type: ignore[attr-defined]
        counts[task.namespace] = counts.get(task.namespace, 0) + 1
    for ns, count in counts.items():
        yield (ns,), count


def _cgroup_values(tasks: object, kind: str) -> Iterable[tuple[LabelValues, float]]:
    from pycontainerd.runc_shim.cgroups_v2 import task_metrics

    for task in list(tasks._tasks.values()):  # type: ignore[attr-defined]
        if not task.pid:
            continue
        with contextlib.suppress(OSError, ValueError):
            m: Any = task_metrics(task.pid)
            if m.DESCRIPTOR.full_name.endswith("v2.Metrics"):
                value = m.memory.usage if kind == "memory" else m.cpu.usage_usec * 1000
            else:
                value = m.memory.usage.usage if kind == "memory" else m.cpu.usage.total
            yield (task.id, task.namespace), value
