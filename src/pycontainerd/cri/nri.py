"""The CRI plugin's side of NRI: pods and containers described to plugins, their answers applied.

:class:`NRIBridge` wraps the daemon's :class:`~pycontainerd.nri.Adaptation` (plugin
``io.containerd.nri.v1.nri``) for the CRI RPCs, as containerd's ``internal/cri/nri`` does:

* it turns a :class:`~.state.PodSandbox` and a :class:`~.state.CRIContainer` (with its OCI spec)
  into NRI's ``PodSandbox`` and ``Container`` messages;
* it lists the runtime's pods and containers when a plugin synchronizes;
* it applies what plugins ask of other containers (resource updates, evictions).

Where each hook runs, and what its failure does, follows containerd: RunPodSandbox,
CreateContainer, StartContainer and UpdateContainer fail the RPC when a plugin fails them;
every other notification only logs. A plugin that crashes or does not answer in time is dropped
by the adaptation and the RPC goes on without it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from pycontainerd.aio import spawn
from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.errdefs import NotFound
from pycontainerd.nri import builders, pb
from pycontainerd.nri.spec import apply_adjustment

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pycontainerd.cri import state
    from pycontainerd.cri.service import CRIService
    from pycontainerd.nri import Adaptation

log = logging.getLogger(__name__)

_CRI_STATES = {
    api.CONTAINER_CREATED: "created",
    api.CONTAINER_RUNNING: "running",
    api.CONTAINER_EXITED: "stopped",
    api.CONTAINER_UNKNOWN: "unknown",
}
_HOOK_FIELDS = (
    ("prestart", "prestart"),
    ("create_runtime", "createRuntime"),
    ("create_container", "createContainer"),
    ("start_container", "startContainer"),
    ("poststart", "poststart"),
    ("poststop", "poststop"),
)


def from_cri_resources(res: api.LinuxContainerResources) -> pb.LinuxResources:
    """CRI container resources as NRI resources (the fields CRI can express)."""
    return builders.linux_resources(
        cpu_shares=res.cpu_shares,
        cpu_quota=res.cpu_quota,
        cpu_period=res.cpu_period,
        cpuset_cpus=res.cpuset_cpus,
        cpuset_mems=res.cpuset_mems,
        memory_limit=res.memory_limit_in_bytes,
        memory_swap=res.memory_swap_limit_in_bytes or None,
        hugepage_limits={h.page_size: h.limit for h in res.hugepage_limits},
        unified=dict(res.unified),
    )


def to_cri_resources(res: pb.LinuxResources, oom_score_adj: int = 0) -> api.LinuxContainerResources:
    """NRI resources back as CRI container resources (what CRI cannot express is dropped)."""
    out = api.LinuxContainerResources(oom_score_adj=oom_score_adj)
    if res.HasField("memory"):
        out.memory_limit_in_bytes = res.memory.limit.value
        if res.memory.HasField("swap"):
            out.memory_swap_limit_in_bytes = res.memory.swap.value
    if res.HasField("cpu"):
        out.cpu_shares = res.cpu.shares.value
        out.cpu_period = res.cpu.period.value
        out.cpu_quota = res.cpu.quota.value
        out.cpuset_cpus = res.cpu.cpus
        out.cpuset_mems = res.cpu.mems
    out.hugepage_limits.extend(api.HugepageLimit(page_size=h.page_size, limit=h.limit) for h in res.hugepage_limits)
    out.unified.update(res.unified)
    return out


def _oci_resources(resources: dict[str, Any]) -> pb.LinuxResources:
    """``linux.resources`` of an OCI spec as NRI resources."""
    cpu = resources.get("cpu") or {}
    memory = resources.get("memory") or {}
    pids = resources.get("pids") or {}
    return builders.linux_resources(
        cpu_shares=cpu.get("shares"),
        cpu_quota=cpu.get("quota"),
        cpu_period=cpu.get("period"),
        cpu_realtime_runtime=cpu.get("realtimeRuntime"),
        cpu_realtime_period=cpu.get("realtimePeriod"),
        cpuset_cpus=cpu.get("cpus") or "",
        cpuset_mems=cpu.get("mems") or "",
        memory_limit=memory.get("limit"),
        memory_reservation=memory.get("reservation"),
        memory_swap=memory.get("swap"),
        memory_swappiness=memory.get("swappiness"),
        hugepage_limits={h["pageSize"]: h["limit"] for h in resources.get("hugepageLimits") or []},
        unified=resources.get("unified") or {},
        pids_limit=pids.get("limit"),
    )


def _hooks(spec_hooks: dict[str, Any]) -> pb.Hooks:
    hooks = pb.Hooks()
    for field, key in _HOOK_FIELDS:
        for h in spec_hooks.get(key) or []:
            getattr(hooks, field).append(
                builders.hook(h.get("path", ""), h.get("args") or (), h.get("env") or (), h.get("timeout"))
            )
    return hooks


def _devices(devices: list[dict[str, Any]]) -> list[pb.LinuxDevice]:
    out = []
    for d in devices:
        dev = pb.LinuxDevice(path=d.get("path", ""), type=d.get("type", ""), major=d.get("major", 0))
        dev.minor = d.get("minor", 0)
        out.append(dev)
    return out


class NRIBridge:
    """NRI for the CRI plugin (a no-op when the daemon has no NRI or it is disabled)."""

    def __init__(self, svc: CRIService, adaptation: Adaptation | None) -> None:
        self.svc = svc
        self.adaptation = adaptation if adaptation is not None and adaptation.enabled else None
        self._evictions: set[Any] = set()

    @property
    def enabled(self) -> bool:
        """Whether hooks reach any plugin."""
        return self.adaptation is not None

    async def start(self) -> None:
        """Register as the adaptation's runtime and start it (after the CRI state is recovered)."""
        if self.adaptation is None:
            return
        self.adaptation.set_state_provider(self.current_state)
        self.adaptation.set_update_callback(self.apply_updates)
        await self.adaptation.start()

    # -- describing pods and containers --------------------------------------------------------

    def pod(self, pod: state.PodSandbox) -> pb.PodSandbox:
        """The NRI view of a pod."""
        cfg = pod.config
        linux = cfg.linux
        return builders.pod_sandbox(
            id=pod.id,
            name=cfg.metadata.name,
            uid=cfg.metadata.uid,
            namespace=cfg.metadata.namespace,
            labels=dict(cfg.labels),
            annotations=dict(cfg.annotations),
            runtime_handler=pod.runtime_handler,
            pid=pod.pid,
            ips=[pod.ip, *pod.additional_ips] if pod.ip else [],
            netns_path=pod.netns_path,
            cgroup_parent=linux.cgroup_parent,
            pod_overhead=from_cri_resources(linux.overhead) if linux.HasField("overhead") else None,
            pod_resources=from_cri_resources(linux.resources) if linux.HasField("resources") else None,
        )

    def spec_of(self, container_id: str) -> dict[str, Any]:
        """A container's OCI spec from its record ({} when it has none)."""
        try:
            record = self.svc.metadata.containers.get(self.svc.ctx, container_id)
        except NotFound:
            return {}
        if record.spec is None:
            return {}
        spec: dict[str, Any] = json.loads(record.spec.value)
        return spec

    def container(self, ctr: state.CRIContainer, spec: dict[str, Any] | None = None) -> pb.Container:
        """The NRI view of a container; its spec is read from the record unless given."""
        if spec is None:
            spec = self.spec_of(ctr.id)
        process = spec.get("process") or {}
        linux = spec.get("linux") or {}
        st = ctr.status
        msg = builders.container(
            id=ctr.id,
            pod_sandbox_id=ctr.sandbox_id,
            name=ctr.config.metadata.name,
            state=_CRI_STATES.get(st.state, "unknown"),
            labels=dict(ctr.config.labels),
            annotations=spec.get("annotations") or {},
            args=process.get("args") or (),
            env=process.get("env") or (),
            mounts=spec.get("mounts") or (),
            hooks=_hooks(spec.get("hooks") or {}),
            resources=_oci_resources(linux.get("resources") or {}),
            oom_score_adj=process.get("oomScoreAdj"),
            cgroups_path=linux.get("cgroupsPath", ""),
            namespaces={ns["type"]: ns.get("path", "") for ns in linux.get("namespaces") or []},
            devices=_devices(linux.get("devices") or []),
            pid=st.pid,
            rlimits=[(r["type"], r["hard"], r["soft"]) for r in process.get("rlimits") or []],
            created_at=ctr.created_at,
            started_at=st.started_at,
            finished_at=st.finished_at,
            exit_code=st.exit_code,
            image=ctr.config.image.image,
        )
        if st.state == api.CONTAINER_EXITED:
            msg.status_reason = st.reason
            msg.status_message = st.message
        user = process.get("user") or {}
        msg.user.uid = int(user.get("uid", 0))
        msg.user.gid = int(user.get("gid", 0))
        msg.user.additional_gids.extend(int(g) for g in user.get("additionalGids") or [])
        msg.linux.sysctl.update(linux.get("sysctl") or {})
        return msg

    def _pod_of(self, ctr: state.CRIContainer) -> pb.PodSandbox:
        pod = self.svc.sandboxes.get(ctr.sandbox_id)
        return self.pod(pod) if pod is not None else pb.PodSandbox(id=ctr.sandbox_id)

    async def current_state(self) -> tuple[list[pb.PodSandbox], list[pb.Container]]:
        """Every known pod, and every container that has not exited (for Synchronize)."""
        pods = [self.pod(p) for p in self.svc.sandboxes.values()]
        containers = [
            self.container(c)
            for c in self.svc.containers.values()
            if c.status.state in (api.CONTAINER_CREATED, api.CONTAINER_RUNNING)
        ]
        return pods, containers

    # -- what plugins ask for -----------------------------------------------------------------

    async def apply_updates(
        self, updates: list[pb.ContainerUpdate], evictions: list[pb.ContainerEviction]
    ) -> Sequence[pb.ContainerUpdate]:
        """Apply resource updates (failures returned unless ignorable) and start evictions."""
        from pycontainerd.cri.containers import apply_resources

        failed = []
        for update in updates:
            ctr = self.svc.containers.get(update.container_id)
            if ctr is None:
                continue
            try:
                await apply_resources(self.svc, ctr, to_cri_resources(update.linux.resources))
            except Exception as exc:
                log.warning("nri: update of container %s failed: %s", update.container_id, exc)
                if not update.ignore_failure:
                    failed.append(update)
        for eviction in evictions:
            self._evict(eviction)
        return failed

    def _evict(self, eviction: pb.ContainerEviction) -> None:
        """Stop an evicted container in the background (the requesting hook holds NRI's lock)."""
        from pycontainerd.cri.containers import stop_container_now

        ctr = self.svc.containers.get(eviction.container_id)
        if ctr is None:
            return
        log.info("nri: evicting container %s: %s", ctr.id, eviction.reason or "no reason given")
        task = spawn(stop_container_now(self.svc, ctr, 0), name=f"nri-evict-{ctr.id[:12]}")
        self._evictions.add(task)
        task.add_done_callback(self._evictions.discard)

    # -- hooks ---------------------------------------------------------------------------------

    async def run_pod_sandbox(self, pod: state.PodSandbox) -> None:
        """RunPodSandbox: a failure fails the pod (plugins are told it stopped and went away)."""
        if self.adaptation is None:
            return
        msg = self.pod(pod)
        try:
            await self.adaptation.run_pod_sandbox(msg)
        except Exception:
            with contextlib.suppress(Exception):
                await self.adaptation.stop_pod_sandbox(msg)
            with contextlib.suppress(Exception):
                await self.adaptation.remove_pod_sandbox(msg)
            raise

    async def update_pod_sandbox(
        self,
        pod: state.PodSandbox,
        overhead: api.LinuxContainerResources | None,
        resources: api.LinuxContainerResources | None,
    ) -> None:
        """UpdatePodSandbox (UpdatePodSandboxResources); a failure fails the call."""
        if self.adaptation is not None:
            await self.adaptation.update_pod_sandbox(
                self.pod(pod),
                from_cri_resources(overhead) if overhead is not None else None,
                from_cri_resources(resources) if resources is not None else None,
            )

    async def post_update_pod_sandbox(self, pod: state.PodSandbox) -> None:
        """PostUpdatePodSandbox notification (failures logged)."""
        if self.adaptation is not None:
            try:
                await self.adaptation.post_update_pod_sandbox(self.pod(pod))
            except Exception as exc:
                log.error("nri: pod post-update notification failed: %s", exc)

    async def stop_pod_sandbox(self, pod: state.PodSandbox) -> None:
        """StopPodSandbox notification (failures logged)."""
        if self.adaptation is not None:
            try:
                await self.adaptation.stop_pod_sandbox(self.pod(pod))
            except Exception as exc:
                log.error("nri: sandbox stop notification failed: %s", exc)

    async def remove_pod_sandbox(self, pod: state.PodSandbox) -> None:
        """RemovePodSandbox notification (failures logged)."""
        if self.adaptation is not None:
            try:
                await self.adaptation.remove_pod_sandbox(self.pod(pod))
            except Exception as exc:
                log.error("nri: pod removal notification failed: %s", exc)

    async def create_container(self, pod: state.PodSandbox, ctr: state.CRIContainer, spec: dict[str, Any]) -> None:
        """CreateContainer: the plugins' merged adjustment applied to ``spec`` in place.

        Raises:
            NRIError: A plugin failed the request, or two plugins' changes conflict.
            SpecAdjustError: The adjustment cannot be applied.
        """
        if self.adaptation is None:
            return
        result = await self.adaptation.create_container(self.pod(pod), self.container(ctr, spec))
        apply_adjustment(spec, result.adjustment, resolve_rdt=lambda name: {"closID": name} if name else None)
        if result.updates or result.evictions:
            await self.apply_updates(result.updates, result.evictions)

    async def undo_create_container(self, pod: state.PodSandbox, ctr: state.CRIContainer, spec: dict[str, Any]) -> None:
        """The container NRI saw created never came to be: tell plugins it stopped and was removed."""
        if self.adaptation is None:
            return
        msg = self.container(ctr, spec)
        try:
            await self.adaptation.remove_container(self.pod(pod), msg)
        except Exception as exc:
            log.error("nri: container creation undo failed: %s", exc)

    async def post_create_container(self, pod: state.PodSandbox, ctr: state.CRIContainer) -> None:
        """PostCreateContainer notification (failures logged)."""
        if self.adaptation is not None:
            try:
                await self.adaptation.post_create_container(self.pod(pod), self.container(ctr))
            except Exception as exc:
                log.error("nri: post-create notification failed: %s", exc)

    async def start_container(self, pod: state.PodSandbox, ctr: state.CRIContainer) -> None:
        """StartContainer, before the process starts; a failure fails the start."""
        if self.adaptation is not None:
            await self.adaptation.start_container(self.pod(pod), self.container(ctr))

    async def post_start_container(self, pod: state.PodSandbox, ctr: state.CRIContainer) -> None:
        """PostStartContainer notification (failures logged)."""
        if self.adaptation is not None:
            try:
                await self.adaptation.post_start_container(self.pod(pod), self.container(ctr))
            except Exception as exc:
                log.error("nri: post-start notification failed: %s", exc)

    async def update_container(
        self, pod: state.PodSandbox, ctr: state.CRIContainer, resources: api.LinuxContainerResources
    ) -> api.LinuxContainerResources:
        """UpdateContainer: the resources to apply, as the plugins left them; a failure fails the update."""
        if self.adaptation is None:
            return resources
        result = await self.adaptation.update_container(
            self.pod(pod), self.container(ctr), from_cri_resources(resources)
        )
        if result.updates or result.evictions:
            await self.apply_updates(result.updates, result.evictions)
        return to_cri_resources(result.resources, resources.oom_score_adj)

    async def post_update_container(self, pod: state.PodSandbox, ctr: state.CRIContainer) -> None:
        """PostUpdateContainer notification (failures logged)."""
        if self.adaptation is not None:
            try:
                await self.adaptation.post_update_container(self.pod(pod), self.container(ctr))
            except Exception as exc:
                log.error("nri: post-update notification failed: %s", exc)

    async def stop_container(self, ctr: state.CRIContainer) -> None:
        """StopContainer notification, once per container: on StopContainer or when it exits by itself."""
        if self.adaptation is None:
            return
        try:
            updates = await self.adaptation.stop_container(self._pod_of(ctr), self.container(ctr))
            if updates:
                await self.apply_updates(list(updates), [])
        except Exception as exc:
            log.error("nri: stop notification for container %s failed: %s", ctr.id, exc)

    async def remove_container(self, ctr: state.CRIContainer) -> None:
        """RemoveContainer notification (failures logged)."""
        if self.adaptation is None:
            return
        try:
            updates = await self.adaptation.remove_container(self._pod_of(ctr), self.container(ctr))
            if updates:
                await self.apply_updates(list(updates), [])
        except Exception as exc:
            log.error("nri: remove notification for container %s failed: %s", ctr.id, exc)

    async def close(self) -> None:
        """Wait for evictions in flight."""
        for task in list(self._evictions):
            task.cancel()
