"""The real Adaptation driving real SDK plugins over a unix socket (external plugins)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from pycontainerd.config.model import ConfigError
from pycontainerd.nri import (
    Adaptation,
    Adjustment,
    ConflictError,
    NRIConfig,
    Plugin,
    PluginError,
    ValidationError,
    apply_adjustment,
    container,
    container_update,
    linux_resources,
    pb,
    pod_sandbox,
)
from pycontainerd.nri.api import Event, event_bit

from .conftest import Log, Recorder, config, running
from .helpers import run

POD = pod_sandbox(id="pod1", name="web", uid="u1", namespace="default", netns_path="/run/netns/x")
CTR = container(id="ctr1", pod_sandbox_id="pod1", name="app", env=["PATH=/bin"], args=["sh"])


def test_config_defaults_and_durations() -> None:
    cfg = NRIConfig()
    assert (cfg.disable, cfg.disable_connections) == (False, False)
    assert cfg.socket_path == "/run/pycontainerd/nri.sock"
    assert (cfg.plugin_path, cfg.plugin_config_path) == ("/opt/nri/plugins", "/etc/nri/conf.d")
    assert (cfg.registration_timeout, cfg.request_timeout) == (5.0, 2.0)
    assert NRIConfig(plugin_request_timeout="1m30s").request_timeout == 90.0
    with pytest.raises(ConfigError, match="plugin_request_timeout"):
        NRIConfig(plugin_request_timeout="soon")


def test_event_mask_follows_overridden_hooks() -> None:
    class OnlyCreate(Plugin):
        async def create_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
            return None

    assert OnlyCreate(name="x", index="01").events == event_bit(Event.CREATE_CONTAINER)
    assert Plugin(name="x", index="01").events == 0
    assert Plugin(name="10-named").index == "10"


def test_registration_synchronize_and_ordered_events(tmp_path: Path) -> None:
    log: Log = []

    async def state() -> tuple[list[pb.PodSandbox], list[pb.Container]]:
        return [POD], [container(id="old", pod_sandbox_id="pod1", state="running")]

    async def main() -> None:
        late, early = Recorder(log, "late", "20"), Recorder(log, "early", "10")
        adaptation = Adaptation(config(tmp_path), state_provider=state)
        async with running(adaptation, late, early):
            assert adaptation.plugins == ["10-early", "20-late"]
            assert late.synced == (["pod1"], ["old"])
            assert late.runtime_name == "pycontainerd"
            assert late.request_timeout == pytest.approx(0.3)
            await adaptation.run_pod_sandbox(POD)
            result = await adaptation.create_container(POD, CTR)
            assert len(result.adjustment.env) == 0
            await adaptation.post_create_container(POD, CTR)
            await adaptation.start_container(POD, CTR)
            await adaptation.post_start_container(POD, CTR)
            await adaptation.update_container(POD, CTR, linux_resources(cpu_shares=2))
            await adaptation.post_update_container(POD, CTR)
            await adaptation.stop_container(POD, CTR)
            await adaptation.stop_container(POD, CTR)  # a second stop is not relayed again
            await adaptation.remove_container(POD, CTR)
            await adaptation.stop_pod_sandbox(POD)
            await adaptation.remove_pod_sandbox(POD)
        events = [
            "RunPodSandbox",
            "CreateContainer",
            "PostCreateContainer",
            "StartContainer",
            "PostStartContainer",
            "UpdateContainer",
            "PostUpdateContainer",
            "StopContainer",
            "RemoveContainer",
            "StopPodSandbox",
            "RemovePodSandbox",
        ]
        expected = [(p, e, "pod1" if "Pod" in e else "ctr1") for e in events for p in ("10-early", "20-late")]
        assert log == expected

    run(main())


def test_remove_without_stop_relays_stop_first(tmp_path: Path) -> None:
    log: Log = []

    async def main() -> None:
        async with running(Adaptation(config(tmp_path)), Recorder(log, "r", "10")) as adaptation:
            await adaptation.create_container(POD, CTR)
            await adaptation.start_container(POD, CTR)
            await adaptation.remove_container(POD, CTR)
        assert [e for _, e, _ in log] == ["CreateContainer", "StartContainer", "StopContainer", "RemoveContainer"]

    run(main())


class EnvPlugin(Plugin):
    def __init__(self, name: str, index: str, key: str, value: str) -> None:
        super().__init__(name=name, index=index)
        self.key, self.value = key, value

    async def create_container(self, pod: pb.PodSandbox, container: pb.Container) -> Adjustment:
        return Adjustment().add_env(self.key, self.value).add_mount(f"/{self.name}", "/src", options=["ro"])


def test_adjustments_of_two_plugins_merge_and_apply_to_a_spec(tmp_path: Path) -> None:
    async def main() -> None:
        plugins = (EnvPlugin("a", "10", "A", "1"), EnvPlugin("b", "20", "B", "2"))
        async with running(Adaptation(config(tmp_path)), *plugins) as adaptation:
            result = await adaptation.create_container(POD, CTR)
        spec = {"process": {"env": ["PATH=/bin"]}, "mounts": []}
        apply_adjustment(spec, result.adjustment)
        assert spec["process"]["env"] == ["PATH=/bin", "A=1", "B=2"]
        assert [m["destination"] for m in spec["mounts"]] == ["/a", "/b"]

    run(main())


def test_conflicting_plugins_fail_creation_naming_both(tmp_path: Path) -> None:
    async def main() -> None:
        plugins = (EnvPlugin("a", "10", "FOO", "1"), EnvPlugin("b", "20", "FOO", "2"))
        async with running(Adaptation(config(tmp_path)), *plugins) as adaptation:
            with pytest.raises(ConflictError, match='plugins "20-b" and "10-a" both tried to set Env FOO'):
                await adaptation.create_container(POD, CTR)
            assert adaptation.plugins == ["10-a", "20-b"]  # a conflict drops no one

    run(main())


class Hanging(Plugin):
    async def create_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        await asyncio.Event().wait()


class Crashing(Plugin):
    async def create_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        assert self._mux is not None
        self._mux._writer.transport.abort()  # the process "dies": its socket goes away
        await asyncio.Event().wait()


@pytest.mark.parametrize("bad_cls", [Hanging, Crashing])
def test_hung_or_crashed_plugin_is_dropped_and_creation_continues(tmp_path: Path, bad_cls: type[Plugin]) -> None:
    async def main() -> None:
        bad = bad_cls(name="bad", index="05")
        good = EnvPlugin("good", "10", "OK", "1")
        async with running(Adaptation(config(tmp_path)), bad, good) as adaptation:
            loop = asyncio.get_running_loop()
            started = loop.time()
            result = await adaptation.create_container(POD, CTR)
            elapsed = loop.time() - started
            assert [(e.key, e.value) for e in result.adjustment.env] == [("OK", "1")]
            assert adaptation.plugins == ["10-good"]
            assert elapsed < 2.0  # bounded by plugin_request_timeout (0.3 s), not the hang
            await asyncio.wait_for(bad.wait(), 5)  # the plugin sees the runtime hang up
            # The next operation no longer waits for it.
            started = loop.time()
            await adaptation.create_container(POD, container(id="ctr2", pod_sandbox_id="pod1"))
            assert loop.time() - started < 0.25

    run(main())


def test_plugin_error_fails_the_operation_and_keeps_the_plugin(tmp_path: Path) -> None:
    class Refuser(Plugin):
        async def create_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
            raise ValueError("no containers today")

    async def main() -> None:
        async with running(Adaptation(config(tmp_path)), Refuser(name="refuser", index="30")) as adaptation:
            with pytest.raises(PluginError, match=r"30-refuser.*no containers today"):
                await adaptation.create_container(POD, CTR)
            assert adaptation.plugins == ["30-refuser"]

    run(main())


def test_registration_timeout_closes_a_silent_connection(tmp_path: Path) -> None:
    async def main() -> None:
        adaptation = Adaptation(config(tmp_path, plugin_registration_timeout="200ms"))
        await adaptation.start()
        try:
            reader, writer = await asyncio.open_unix_connection(str(tmp_path / "nri.sock"))
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await asyncio.wait_for(reader.read(), 5) == b""  # the runtime hung up
            assert 0.15 < loop.time() - started < 2.0
            writer.close()
            assert adaptation.plugins == []
        finally:
            await adaptation.stop()

    run(main())


def test_invalid_registration_is_refused(tmp_path: Path) -> None:
    async def main() -> None:
        adaptation = Adaptation(config(tmp_path))
        await adaptation.start()
        try:
            plugin = Plugin(name="x", index="01", socket_path=str(tmp_path / "nri.sock"))
            plugin.index = "1"  # bypass the SDK's own check
            with pytest.raises(Exception, match="index"):
                await plugin.start()
            await plugin.stop()
        finally:
            await adaptation.stop()

    run(main())


def test_unsolicited_updates_and_evictions_reach_the_callback(tmp_path: Path) -> None:
    received: list[tuple[list[str], list[str]]] = []

    async def apply(
        updates: list[pb.ContainerUpdate], evictions: list[pb.ContainerEviction]
    ) -> list[pb.ContainerUpdate]:
        received.append(([u.container_id for u in updates], [e.reason for e in evictions]))
        return [u for u in updates if u.container_id == "missing"]

    async def main() -> None:
        plugin = Plugin(name="updater", index="40")
        async with running(Adaptation(config(tmp_path), update_callback=apply), plugin):
            failed = await plugin.update_containers(
                [container_update("ctr1", cpu_shares=5), container_update("missing", cpu_shares=1)],
                [pb.ContainerEviction(container_id="ctr9", reason="too hungry")],
            )
        assert [u.container_id for u in failed] == ["missing"]
        assert received == [(["ctr1", "missing"], ["too hungry"])]

    run(main())


def test_update_and_stop_return_plugin_updates(tmp_path: Path) -> None:
    class Balancer(Plugin):
        async def update_container(
            self, pod: pb.PodSandbox, container: pb.Container, resources: pb.LinuxResources
        ) -> list[pb.ContainerUpdate]:
            return [container_update(container.id, cpuset_cpus="3"), container_update("neighbour", cpu_shares=7)]

        async def stop_container(self, pod: pb.PodSandbox, container: pb.Container) -> list[pb.ContainerUpdate]:
            return [container_update("neighbour", cpuset_cpus="0-3")]

    async def main() -> None:
        async with running(Adaptation(config(tmp_path)), Balancer(name="balancer", index="50")) as adaptation:
            await adaptation.create_container(POD, CTR)
            result = await adaptation.update_container(POD, CTR, linux_resources(cpuset_cpus="0-1", cpu_shares=2))
            assert result.resources.cpu.cpus == "3"
            assert result.resources.cpu.shares.value == 2
            assert [(u.container_id, u.linux.resources.cpu.shares.value) for u in result.updates] == [("neighbour", 7)]
            updates = await adaptation.stop_container(POD, CTR)
            assert [(u.container_id, u.linux.resources.cpu.cpus) for u in updates] == [("neighbour", "0-3")]

    run(main())


def test_old_plugins_get_notifications_through_state_change(tmp_path: Path) -> None:
    log: Log = []

    class OldRecorder(Recorder):
        def _method_table(self):  # type: ignore[no-untyped-def]
            table = super()._method_table()
            for method in ("RunPodSandbox", "StartContainer", "RemoveContainer"):
                del table[method]  # a plugin built before the dedicated methods existed
            return table

    async def main() -> None:
        async with running(Adaptation(config(tmp_path)), OldRecorder(log, "old", "10")) as adaptation:
            await adaptation.run_pod_sandbox(POD)
            await adaptation.create_container(POD, CTR)
            await adaptation.start_container(POD, CTR)
            await adaptation.remove_container(POD, CTR)
            assert adaptation.plugins == ["10-old"]
        assert [e for _, e, _ in log] == [
            "RunPodSandbox",
            "CreateContainer",
            "StartContainer",
            "StopContainer",
            "RemoveContainer",
        ]

    run(main())


def test_validator_can_reject_the_merged_adjustment(tmp_path: Path) -> None:
    class NoFoo(Plugin):
        async def validate_container_adjustment(self, request: pb.ValidateContainerAdjustmentRequest) -> str | None:
            keys = [e.key for e in request.adjust.env]
            owners = request.owners.owners[request.container.id].compound[6].owners  # Field Env
            return f"FOO set by {owners['FOO']}" if "FOO" in keys else None

    async def main() -> None:
        plugins = (NoFoo(name="validator", index="90"), EnvPlugin("setter", "10", "FOO", "1"))
        async with running(Adaptation(config(tmp_path)), *plugins) as adaptation:
            with pytest.raises(ValidationError, match="FOO set by 10-setter"):
                await adaptation.create_container(POD, CTR)

    run(main())


def test_disabled_nri_is_inert(tmp_path: Path) -> None:
    async def main() -> None:
        adaptation = Adaptation(config(tmp_path, disable=True))
        await adaptation.start()
        assert not (tmp_path / "nri.sock").exists()
        result = await adaptation.create_container(POD, CTR)
        assert result.adjustment == pb.ContainerAdjustment()
        await adaptation.stop()

    run(main())


def test_disable_connections_does_not_listen(tmp_path: Path) -> None:
    async def main() -> None:
        adaptation = Adaptation(config(tmp_path, disable_connections=True))
        await adaptation.start()
        with socket.socket(socket.AF_UNIX) as probe, pytest.raises(FileNotFoundError):
            probe.connect(str(tmp_path / "nri.sock"))
        await adaptation.stop()

    run(main())


def test_oversized_state_is_synchronized_in_chunks(tmp_path: Path) -> None:
    """More than 4 MiB of state does not fit one ttrpc message: it is split with ``more``."""
    big = "x" * 2048
    containers = [
        container(id=f"c{i}", pod_sandbox_id="pod1", state="running", annotations={"blob": big}) for i in range(2500)
    ]

    async def state() -> tuple[list[pb.PodSandbox], list[pb.Container]]:
        return [POD], containers

    async def main() -> None:
        plugin = Recorder([], "sync", "10")
        async with running(Adaptation(config(tmp_path, plugin_request_timeout="10s"), state_provider=state), plugin):
            assert plugin.synced is not None
            assert plugin.synced[0] == ["pod1"]
            assert plugin.synced[1] == [c.id for c in containers]

    run(main())
