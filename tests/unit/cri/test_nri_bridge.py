"""The CRI's NRI bridge without a daemon: resources both ways, containers described from their spec,
plugin updates applied to the right containers, evictions, and hooks as no-ops without NRI."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri import containers, state
from pycontainerd.cri.nri import NRIBridge, from_cri_resources, to_cri_resources
from pycontainerd.nri import pb


def test_cri_resources_round_trip_through_nri() -> None:
    cri = api.LinuxContainerResources(
        cpu_shares=512,
        cpu_quota=50000,
        cpu_period=100000,
        cpuset_cpus="0-1",
        cpuset_mems="0",
        memory_limit_in_bytes=64 << 20,
        memory_swap_limit_in_bytes=128 << 20,
        unified={"memory.high": "50M"},
    )
    cri.hugepage_limits.add(page_size="2MB", limit=1 << 21)
    res = from_cri_resources(cri)
    assert res.cpu.shares.value == 512 and res.cpu.quota.value == 50000 and res.cpu.period.value == 100000
    assert res.cpu.cpus == "0-1" and res.memory.limit.value == 64 << 20 and res.memory.swap.value == 128 << 20
    assert [(h.page_size, h.limit) for h in res.hugepage_limits] == [("2MB", 1 << 21)]
    back = to_cri_resources(res, oom_score_adj=-5)
    cri.oom_score_adj = -5
    assert back == cri


def test_no_swap_stays_unset() -> None:
    res = from_cri_resources(api.LinuxContainerResources(memory_limit_in_bytes=1 << 20))
    assert not res.memory.HasField("swap")
    assert to_cri_resources(res).memory_swap_limit_in_bytes == 0


@dataclass
class FakeRecord:
    spec: Any = None


@dataclass
class FakeService:
    sandboxes: dict[str, state.PodSandbox] = field(default_factory=dict)
    containers: dict[str, state.CRIContainer] = field(default_factory=dict)
    applied: list[tuple[str, api.LinuxContainerResources]] = field(default_factory=list)


def _pod() -> state.PodSandbox:
    config = api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name="web", namespace="prod", uid="u1"), labels={"app": "web"}
    )
    config.linux.cgroup_parent = "/kubepods/pod-u1"
    config.linux.resources.memory_limit_in_bytes = 1 << 30
    return state.PodSandbox(
        id="p" * 64,
        name="web_prod_u1_0",
        config=config,
        runtime_handler="fast",
        sandboxer="podsandbox",
        created_at=1,
        netns_path="/run/netns/x",
        ip="10.0.0.2",
        additional_ips=["fd00::2"],
        state=api.SANDBOX_READY,
        pid=42,
    )


def _container(cid: str = "c" * 64) -> state.CRIContainer:
    config = api.ContainerConfig(metadata=api.ContainerMetadata(name="app"), image=api.ImageSpec(image="busybox"))
    config.labels["tier"] = "front"
    ctr = state.CRIContainer(
        id=cid,
        name="app_web",
        sandbox_id="p" * 64,
        config=config,
        image_id="sha256:1",
        image_ref="busybox@sha256:2",
        snapshotter="overlayfs",
        log_path="",
        created_at=7,
    )
    ctr.status.state = api.CONTAINER_RUNNING
    ctr.status.pid = 99
    return ctr


SPEC: dict[str, Any] = {
    "process": {
        "args": ["sh", "-c", "sleep 1"],
        "env": ["PATH=/bin", "A=1"],
        "oomScoreAdj": 100,
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [10, 20]},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512}],
    },
    "annotations": {"io.kubernetes.cri.container-name": "app"},
    "mounts": [{"destination": "/data", "source": "/srv", "type": "bind", "options": ["rbind", "ro"]}],
    "hooks": {"createRuntime": [{"path": "/bin/true", "args": ["true"], "timeout": 5}]},
    "linux": {
        "cgroupsPath": "/kubepods/pod-u1/ccc",
        "namespaces": [{"type": "pid"}, {"type": "network", "path": "/run/netns/x"}],
        "resources": {"memory": {"limit": 1 << 26}, "cpu": {"shares": 256, "cpus": "1"}, "pids": {"limit": 50}},
        "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
        "sysctl": {"net.core.somaxconn": "1024"},
    },
}


def test_pod_and_container_messages() -> None:
    svc = FakeService()
    bridge = NRIBridge(svc, None)  # type: ignore[arg-type]
    pod = bridge.pod(_pod())
    assert (pod.name, pod.namespace, pod.uid, pod.runtime_handler, pod.pid) == ("web", "prod", "u1", "fast", 42)
    assert list(pod.ips) == ["10.0.0.2", "fd00::2"] and pod.labels["app"] == "web"
    assert pod.linux.cgroup_parent == "/kubepods/pod-u1"
    assert [(n.type, n.path) for n in pod.linux.namespaces] == [("network", "/run/netns/x")]
    assert pod.linux.pod_resources.memory.limit.value == 1 << 30
    ctr = bridge.container(_container(), SPEC)
    assert ctr.state == pb.CONTAINER_RUNNING and ctr.pid == 99 and ctr.name == "app"
    assert list(ctr.args) == ["sh", "-c", "sleep 1"] and list(ctr.env) == ["PATH=/bin", "A=1"]
    assert ctr.labels["tier"] == "front" and ctr.annotations["io.kubernetes.cri.container-name"] == "app"
    assert [(m.destination, m.source, list(m.options)) for m in ctr.mounts] == [("/data", "/srv", ["rbind", "ro"])]
    assert ctr.hooks.create_runtime[0].path == "/bin/true" and ctr.hooks.create_runtime[0].timeout.value == 5
    assert ctr.linux.oom_score_adj.value == 100 and ctr.linux.cgroups_path == "/kubepods/pod-u1/ccc"
    assert ctr.linux.resources.memory.limit.value == 1 << 26 and ctr.linux.resources.cpu.shares.value == 256
    assert ctr.linux.resources.pids.limit == 50
    assert [(d.path, d.major, d.minor) for d in ctr.linux.devices] == [("/dev/fuse", 10, 229)]
    assert [(r.type, r.hard, r.soft) for r in ctr.rlimits] == [("RLIMIT_NOFILE", 1024, 512)]
    assert (ctr.user.uid, ctr.user.gid, list(ctr.user.additional_gids)) == (1000, 1000, [10, 20])
    assert ctr.linux.sysctl["net.core.somaxconn"] == "1024" and ctr.image.name == "busybox"


def test_updates_apply_to_known_containers_and_report_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    svc = FakeService()
    ok, broken = _container("a" * 64), _container("b" * 64)
    svc.containers = {ok.id: ok, broken.id: broken}

    async def apply(svc_: Any, ctr: state.CRIContainer, linux: api.LinuxContainerResources) -> None:
        if ctr is broken:
            raise RuntimeError("cgroup gone")
        svc_.applied.append((ctr.id, linux))

    monkeypatch.setattr(containers, "apply_resources", apply)
    bridge = NRIBridge(svc, None)  # type: ignore[arg-type]

    def update(cid: str, ignore: bool = False) -> pb.ContainerUpdate:
        u = pb.ContainerUpdate(container_id=cid, ignore_failure=ignore)
        u.linux.resources.memory.limit.value = 1 << 25
        return u

    failed = asyncio.run(
        bridge.apply_updates([update(ok.id), update(broken.id), update(broken.id, True), update("gone")], [])
    )
    assert [u.container_id for u in failed] == [broken.id]
    assert [(cid, r.memory_limit_in_bytes) for cid, r in svc.applied] == [(ok.id, 1 << 25)]


def test_evictions_stop_the_container_in_the_background(monkeypatch: pytest.MonkeyPatch) -> None:
    svc = FakeService()
    victim = _container()
    svc.containers = {victim.id: victim}
    stopped: list[tuple[str, float]] = []

    async def stop(svc_: Any, ctr: state.CRIContainer, timeout: float) -> None:  # noqa: ASYNC109
        stopped.append((ctr.id, timeout))

    monkeypatch.setattr(containers, "stop_container_now", stop)

    async def main() -> None:
        bridge = NRIBridge(svc, None)  # type: ignore[arg-type]
        await bridge.apply_updates([], [pb.ContainerEviction(container_id=victim.id, reason="too hungry")])
        assert stopped == []  # not inline: the hook that asked holds NRI's lock
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert stopped == [(victim.id, 0)]

    asyncio.run(main())


def test_hooks_without_nri_change_nothing() -> None:
    svc = FakeService()
    bridge = NRIBridge(svc, None)  # type: ignore[arg-type]
    spec: dict[str, Any] = {"process": {"env": ["A=1"]}}
    resources = api.LinuxContainerResources(memory_limit_in_bytes=5)

    async def main() -> api.LinuxContainerResources:
        pod, ctr = _pod(), _container()
        await bridge.run_pod_sandbox(pod)
        await bridge.create_container(pod, ctr, spec)
        await bridge.start_container(pod, ctr)
        await bridge.stop_container(ctr)
        await bridge.remove_container(ctr)
        return await bridge.update_container(pod, ctr, resources)

    assert not bridge.enabled
    assert asyncio.run(main()) is resources
    assert spec == {"process": {"env": ["A=1"]}}
