"""NRI through the CRI, end to end: a daemon launches plugins from ``plugin_path`` and accepts an
external one on ``socket_path``; kubelet-style CRI calls run a pod whose container sees the env
variable and the mount a plugin injected; the event logger sees every event in order; a crashing
and a hanging plugin are dropped without breaking the pod; each config key changes what happens."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.tools.busybox import build_image
from tests.support.cri import container_config, cri_client, pod_config
from tests.support.daemon import DaemonProcess, private_dir, running_daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "nri"
IMAGE = "docker.io/library/busybox:nri"
NRI = 'plugins."io.containerd.nri.v1.nri"'

MISBEHAVING = """
import asyncio, os, sys
from pycontainerd.nri import Plugin, run_plugin

class Misbehaving(Plugin):
    async def create_container(self, pod, container):
        if self.name == "crash":
            os._exit(3)
        await asyncio.sleep(3600)

sys.exit(run_plugin(Misbehaving))
"""

SHAPE = """
import sys
from pycontainerd.nri import Adjustment, Plugin, run_plugin

class Shape(Plugin):
    async def create_container(self, pod, container):
        adjustment = Adjustment()
        adjustment.set_annotation("nri.test/shaped", "yes")
        adjustment.add_rlimit("RLIMIT_NOFILE", 1000, 1000)
        adjustment.set_resources(memory_limit=40 << 20)
        adjustment.set_oom_score_adj(600)
        adjustment.add_device("/dev/fuse", "c", 10, 229, file_mode=0o666)
        adjustment.add_hook("create_runtime", "/bin/sh", ["sh", "-c", "echo $0 >> " + sys.argv[-1], container.name])
        return adjustment

sys.exit(run_plugin(Shape, sys.argv[1:-1]))
"""

SILENT = """
import time
time.sleep(60)  # launched with fd 3, never registers
"""


def install(plugin_dir: Path, filename: str, command: str) -> None:
    """An executable plugin file exec'ing ``command``."""
    plugin_dir.mkdir(parents=True, exist_ok=True)
    path = plugin_dir / filename
    path.write_text(f"#!/bin/sh\nexec {command}\n")
    path.chmod(0o755)


def nri_config(base: Path, **keys: str | bool) -> str:
    values: dict[str, str | bool] = {
        "socket_path": str(base / "nri.sock"),
        "plugin_path": str(base / "plugins"),
        "plugin_config_path": str(base / "conf.d"),
    }
    values.update(keys)
    lines = [f"[{NRI}]"]
    for key, value in values.items():
        lines.append(f"  {key} = {json.dumps(value)}")
    (base / "conf.d").mkdir(parents=True, exist_ok=True)
    return "\n".join(lines) + "\n"


def events_of(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(predicate: Callable[[], bool], limit: float = 20) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def import_image(d: DaemonProcess, tmp: Path) -> None:
    archive = build_image(tmp / "busybox.tar", ref=IMAGE)
    d.ctr("images", "import", str(archive.path), namespace="k8s.io")


def plugin_pids(d: DaemonProcess) -> dict[str, int]:
    """Processes the daemon launched, by plugin file name (from NRI_PLUGIN_NAME in their environment)."""
    found: dict[str, int] = {}
    children = subprocess.run(["pgrep", "-P", str(d.pid)], capture_output=True, text=True, check=False).stdout
    for pid in (int(p) for p in children.split()):
        with contextlib.suppress(OSError):
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            for entry in env:
                if entry.startswith(b"NRI_PLUGIN_NAME="):
                    found[entry.split(b"=", 1)[1].decode()] = pid
    return found


@contextlib.contextmanager
def external_logger(socket_path: Path, events: Path, tmp: Path) -> Iterator[subprocess.Popen[bytes]]:
    conf = tmp / "logger.toml"
    conf.write_text(f'path = "{events}"\n')
    proc = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "event_logger.py"),
            "--socket",
            str(socket_path),
            "--name",
            "logger",
            "--idx",
            "90",
            "--config",
            str(conf),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_plugins_adjust_containers_see_events_in_order_and_misbehaving_ones_are_dropped(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "hello.txt").write_text("hello from the host")
    plugins = tmp_path / "plugins"
    install(plugins, "10-inject", f"{sys.executable} {EXAMPLES / 'inject_env_mount.py'}")
    (tmp_path / "misbehaving.py").write_text(MISBEHAVING)
    install(plugins, "20-crash", f"{sys.executable} {tmp_path / 'misbehaving.py'}")
    install(plugins, "30-hang", f"{sys.executable} {tmp_path / 'misbehaving.py'}")
    install(plugins, "40-restartlog", f"{sys.executable} {EXAMPLES / 'event_logger.py'}")
    (tmp_path / "shape.py").write_text(SHAPE)
    hook_marker = tmp_path / "hook-ran"
    install(plugins, "50-shape", f"{sys.executable} {tmp_path / 'shape.py'} {hook_marker}")
    extra = nri_config(tmp_path, plugin_request_timeout="1s")
    (tmp_path / "conf.d" / "10-inject.conf").write_text(
        f'[env]\nNRI_INJECTED = "from-plugin"\n[[mounts]]\ndestination = "/nri-data"\nsource = "{data}"\n'
        'options = ["rbind", "ro"]\n'
    )
    restart_events = tmp_path / "restart-events.jsonl"
    (tmp_path / "conf.d" / "restartlog.conf").write_text(f'path = "{restart_events}"\n')
    events = tmp_path / "events.jsonl"
    with (
        running_daemon(extra_config=extra, go_shim=False) as d,
        external_logger(tmp_path / "nri.sock", events, tmp_path) as logger,
        cri_client(str(d.address)) as cri,
    ):
        launched = plugin_pids(d)
        assert set(launched) == {"inject", "crash", "hang", "restartlog", "shape"}
        wait_for(lambda: any(e["event"] == "Synchronize" for e in events_of(events)))
        import_image(d, tmp_path)
        logs = tmp_path / "logs"
        logs.mkdir()
        pod = pod_config("nri-web", host_network=True, log_directory=str(logs))
        pod_id = cri.run_pod(pod)
        started = time.monotonic()
        cid = cri.create(
            pod_id,
            container_config("app", IMAGE, "sh", "-c", 'echo "env=$NRI_INJECTED"; sleep 60', log_path="app.log"),
            pod,
        )
        create_time = time.monotonic() - started
        # The hanging plugin costs one request timeout (1 s), then it is gone; the crashing one died.
        assert 0.9 < create_time < 8, create_time
        wait_for(lambda: not os.path.exists(f"/proc/{launched['crash']}"), 15)
        wait_for(lambda: not os.path.exists(f"/proc/{launched['hang']}"), 15)
        assert "dropped plugin 20-crash" in d.log() and "dropped plugin 30-hang" in d.log()
        cri.start(cid)
        # What the plugin injected, seen from inside the container.
        out = cri.exec_sync(cid, "sh", "-c", 'echo "$NRI_INJECTED"; cat /nri-data/hello.txt')
        assert out.exit_code == 0, out.stderr
        assert out.stdout.decode().split("\n")[:2] == ["from-plugin", "hello from the host"]
        wait_for(lambda: "env=from-plugin" in (logs / "app.log").read_text())
        spec = json.loads(cri.container_status(cid, verbose=True).info["info"])["runtimeSpec"]
        assert "NRI_INJECTED=from-plugin" in spec["process"]["env"]
        assert spec["annotations"]["nri.test/shaped"] == "yes"
        # The other plugin's rlimit, memory limit, OOM score, device and OCI hook, seen for real.
        probe = (
            "ulimit -n; cat /proc/self/oom_score_adj; cat /sys/fs/cgroup/memory/memory.limit_in_bytes;"
            " stat -c '%t:%T %F' /dev/fuse"
        )
        out = cri.exec_sync(cid, "sh", "-c", probe)
        assert out.stdout.decode().split("\n")[:4] == ["1000", "600", str(40 << 20), "a:e5 character special file"]
        assert hook_marker.read_text() == "app\n"
        assert any(m["destination"] == "/nri-data" for m in spec["mounts"])
        # A second container is created without delay: the misbehaving plugins are gone.
        started = time.monotonic()
        cid2 = cri.create(pod_id, container_config("second", IMAGE, "sleep", "60"), pod)
        assert time.monotonic() - started < 0.9
        cri.runtime.UpdatePodSandboxResources(
            api.UpdatePodSandboxResourcesRequest(
                pod_sandbox_id=pod_id, resources=api.LinuxContainerResources(memory_limit_in_bytes=256 << 20)
            )
        )
        cri.runtime.UpdateContainerResources(
            api.UpdateContainerResourcesRequest(
                container_id=cid, linux=api.LinuxContainerResources(memory_limit_in_bytes=64 << 20)
            )
        )
        # A daemon restart: launched plugins come back and synchronize with the running pod.
        d.kill()
        assert logger.wait(timeout=15) == 0  # the external plugin saw the runtime go away
        d.start()
        wait_for(lambda: sum(e["event"] == "Synchronize" for e in events_of(restart_events)) == 2)
        sync = [e for e in events_of(restart_events) if e["event"] == "Synchronize"][-1]
        assert pod_id in sync["pods"] and {cid, cid2} <= set(sync["containers"])
        assert set(plugin_pids(d)) == {"inject", "crash", "hang", "restartlog", "shape"}
        cri.runtime.StopContainer(api.StopContainerRequest(container_id=cid, timeout=1))
        cri.runtime.RemoveContainer(api.RemoveContainerRequest(container_id=cid))
        cri.stop_pod(pod_id)
        cri.remove_pod(pod_id)
    seen = [(e["event"], e.get("container", "")) for e in events_of(events) if e["event"] != "Configure"]
    assert seen[0] == ("Synchronize", "")
    assert [s for s in seen[1:] if s[1] != "second"] == [
        ("RunPodSandbox", ""),
        ("CreateContainer", "app"),
        ("PostCreateContainer", "app"),
        ("StartContainer", "app"),
        ("PostStartContainer", "app"),
        ("UpdatePodSandbox", ""),
        ("PostUpdatePodSandbox", ""),
        ("UpdateContainer", "app"),
        ("PostUpdateContainer", "app"),
    ]
    after = [(e["event"], e.get("container", "")) for e in events_of(restart_events) if e["event"] != "Configure"]
    after = after[after.index(("Synchronize", "")) + 1 :]
    after = after[after.index(("Synchronize", "")) + 1 :]
    assert after == [
        ("StopContainer", "app"),
        ("RemoveContainer", "app"),
        ("StopPodSandbox", ""),
        ("StopContainer", "second"),  # created, never started: stopped for NRI when removed
        ("RemoveContainer", "second"),
        ("RemovePodSandbox", ""),
        ("Shutdown", ""),
    ]


def test_disable_skips_nri(tmp_path: Path) -> None:
    marker = tmp_path / "events.jsonl"
    install(tmp_path / "plugins", "10-log", f"{sys.executable} {EXAMPLES / 'event_logger.py'}")
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "log.conf").write_text(f'path = "{marker}"\n')
    with running_daemon(extra_config=nri_config(tmp_path, disable=True), go_shim=False) as d:
        assert not (tmp_path / "nri.sock").exists()
        assert plugin_pids(d) == {}
        plugins = d.ctr("plugins", "ls").stdout
        nri_line = next(line for line in plugins.splitlines() if "io.containerd.nri.v1" in line)
        assert "skip" in nri_line
        assert any("io.containerd.grpc.v1" in line and "cri" in line and "ok" in line for line in plugins.splitlines())
        with cri_client(str(d.address)) as cri:
            import_image(d, tmp_path)
            pod = pod_config(host_network=True)
            pod_id = cri.run_pod(pod)
            cri.start(cri.create(pod_id, container_config("c", IMAGE, "sleep", "30"), pod))
            cri.stop_pod(pod_id)
            cri.remove_pod(pod_id)
    assert not marker.exists()


def test_disable_connections_keeps_launched_plugins_only(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    install(tmp_path / "plugins", "10-log", f"{sys.executable} {EXAMPLES / 'event_logger.py'}")
    extra = nri_config(tmp_path, disable_connections=True)
    (tmp_path / "conf.d" / "10-log.conf").write_text(f'path = "{events}"\n')
    with running_daemon(extra_config=extra, go_shim=False) as d:
        assert not (tmp_path / "nri.sock").exists()
        assert set(plugin_pids(d)) == {"log"}
        with cri_client(str(d.address)) as cri:
            pod = pod_config(host_network=True)
            pod_id = cri.run_pod(pod)
            cri.remove_pod(pod_id)
    names = [e["event"] for e in events_of(events)]
    assert names[:3] == ["Configure", "Synchronize", "RunPodSandbox"]
    assert "RemovePodSandbox" in names


def test_registration_timeout_drops_a_silent_plugin_and_socket_path_is_where_plugins_connect(tmp_path: Path) -> None:
    (tmp_path / "silent.py").write_text(SILENT)
    install(tmp_path / "plugins", "10-silent", f"{sys.executable} {tmp_path / 'silent.py'}")
    with private_dir("nri-") as sockdir:
        socket_path = sockdir / "custom" / "api.sock"
        extra = nri_config(tmp_path, plugin_registration_timeout="1s", socket_path=str(socket_path))
        started = time.monotonic()
        with running_daemon(extra_config=extra, go_shim=False) as d:
            elapsed = time.monotonic() - started
            assert plugin_pids(d) == {}, "the plugin that never registered is stopped"
            assert elapsed >= 1.0
            assert "silent" in d.log()
            assert socket_path.is_socket()
            events = tmp_path / "events.jsonl"
            with external_logger(socket_path, events, tmp_path), cri_client(str(d.address)) as cri:
                wait_for(lambda: any(e["event"] == "Synchronize" for e in events_of(events)))
                pod = pod_config(host_network=True)
                pod_id = cri.run_pod(pod)
                cri.remove_pod(pod_id)
                wait_for(lambda: any(e["event"] == "RemovePodSandbox" for e in events_of(events)))
        assert not socket_path.exists(), "the socket goes with the daemon"


def test_a_failing_plugin_fails_the_pod_and_it_is_rolled_back(tmp_path: Path) -> None:
    refuse = tmp_path / "refuse.py"
    refuse.write_text(
        "import sys\n"
        "from pycontainerd.nri import Plugin, run_plugin\n"
        "class Refuse(Plugin):\n"
        "    async def run_pod_sandbox(self, pod):\n"
        "        if pod.labels.get('refuse'):\n"
        "            raise RuntimeError('pods labelled refuse are not welcome')\n"
        "sys.exit(run_plugin(Refuse))\n"
    )
    install(tmp_path / "plugins", "10-refuse", f"{sys.executable} {refuse}")
    with running_daemon(extra_config=nri_config(tmp_path), go_shim=False) as d, cri_client(str(d.address)) as cri:
        pod = pod_config(host_network=True)
        pod.labels["refuse"] = "yes"
        with pytest.raises(grpc.RpcError) as err:
            cri.run_pod(pod)
        assert "not welcome" in (err.value.details() or "")
        assert cri.runtime.ListPodSandbox(api.ListPodSandboxRequest()).items == []
        # Rolled back in this daemon: no pause task or container left (a host-wide ps would see other daemons').
        assert d.ctr("tasks", "ls", "-q", namespace="k8s.io").stdout.strip() == ""
        assert d.ctr("containers", "ls", "-q", namespace="k8s.io").stdout.strip() == ""
        ok = pod_config(host_network=True)
        pod_id = cri.run_pod(ok)  # an error is not a dropped plugin: it stays and lets others through
        assert set(plugin_pids(d)) == {"refuse"}
        cri.remove_pod(pod_id)


REBALANCER = """
import asyncio, json, sys
from pycontainerd.nri import Plugin, container_update, pb, run_plugin

class Rebalancer(Plugin):
    ids: dict[str, str] = {}

    async def post_create_container(self, pod, container):
        self.ids[container.name] = container.id

    async def post_start_container(self, pod, container):
        if container.name == "trigger":
            asyncio.get_running_loop().create_task(self.rebalance())

    async def rebalance(self):
        failed = await self.update_containers(
            [container_update(self.ids["keeper"], memory_limit=48 << 20),
             container_update("no-such-container", memory_limit=1 << 20)],
            [pb.ContainerEviction(container_id=self.ids["victim"], reason="rebalancing")],
        )
        with open(sys.argv[-1], "w") as f:
            json.dump([u.container_id for u in failed], f)

sys.exit(run_plugin(Rebalancer, sys.argv[1:-1]))
"""


def test_plugin_initiated_updates_and_evictions(tmp_path: Path) -> None:
    (tmp_path / "rebalancer.py").write_text(REBALANCER)
    result = tmp_path / "failed.json"
    install(tmp_path / "plugins", "10-rebalancer", f"{sys.executable} {tmp_path / 'rebalancer.py'} {result}")
    with running_daemon(extra_config=nri_config(tmp_path), go_shim=False) as d, cri_client(str(d.address)) as cri:
        import_image(d, tmp_path)
        pod = pod_config(host_network=True)
        pod_id = cri.run_pod(pod)
        ids = {}
        for name in ("keeper", "victim", "trigger"):
            ids[name] = cri.create(pod_id, container_config(name, IMAGE, "sleep", "60"), pod)
            cri.start(ids[name])
        wait_for(lambda: result.exists() and result.read_text() != "")
        assert json.loads(result.read_text()) == []  # an unknown container is not a failure, as in containerd
        wait_for(lambda: cri.container_status(ids["victim"]).status.state == api.CONTAINER_EXITED)
        assert cri.container_status(ids["victim"]).status.exit_code == 137
        keeper = cri.container_status(ids["keeper"]).status
        assert keeper.state == api.CONTAINER_RUNNING
        assert keeper.resources.linux.memory_limit_in_bytes == 48 << 20
        limit = cri.exec_sync(ids["keeper"], "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout
        assert int(limit) == 48 << 20
        assert cri.container_status(ids["trigger"]).status.state == api.CONTAINER_RUNNING
        cri.stop_pod(pod_id)
        cri.remove_pod(pod_id)
