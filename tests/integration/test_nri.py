"""NRI end to end: plugins as real processes, launched by the Adaptation (fd 3) or connecting on their own.

No root and no daemon needed: the Adaptation runs in the test's event loop, plugins are the
example plugins (and two misbehaving ones) running as separate Python processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pycontainerd.nri import Adaptation, NRIConfig, NRIError, apply_adjustment, container, pb, pod_sandbox

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "nri"
POD = pod_sandbox(id="pod1", name="web", namespace="default", labels={"app": "web"})
CTR = container(id="ctr1", pod_sandbox_id="pod1", name="app", env=["PATH=/bin"], args=["sh"])

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


def run(coro: Coroutine[Any, Any, T], limit: float = 60) -> T:
    async def limited() -> T:
        async with asyncio.timeout(limit):
            return await coro

    return asyncio.run(limited())


def install(plugin_dir: Path, filename: str, command: str) -> Path:
    """An executable plugin file: a shell script exec'ing ``command`` (no PATH: absolute paths only)."""
    plugin_dir.mkdir(parents=True, exist_ok=True)
    path = plugin_dir / filename
    path.write_text(f"#!/bin/sh\nexec {command}\n")
    path.chmod(0o755)
    return path


def make_config(tmp: Path, **overrides: Any) -> NRIConfig:
    values: dict[str, Any] = {
        "socket_path": str(tmp / "nri.sock"),
        "plugin_path": str(tmp / "plugins"),
        "plugin_config_path": str(tmp / "conf.d"),
        "plugin_registration_timeout": "5s",
        "plugin_request_timeout": "2s",
    }
    values.update(overrides)
    (tmp / "conf.d").mkdir(exist_ok=True)
    return NRIConfig(**values)


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def pids_of(adaptation: Adaptation) -> dict[str, int]:
    return {p.name: p.process.pid for p in adaptation._plugins if p.process is not None}


def proc_facts(pid: int) -> tuple[list[bytes], str]:
    """The environment of a process and what its fd 3 is."""
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"), os.readlink(f"/proc/{pid}/fd/3")


def exists(path: str) -> bool:
    return os.path.exists(path)


async def eventually(predicate: Any, limit: float = 10) -> None:
    """Poll what another process reaches on its own (registration, exit): there is no event to await."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def state() -> tuple[list[pb.PodSandbox], list[pb.Container]]:
    return [POD], [container(id="old", pod_sandbox_id="pod1", state="running")]


def test_launched_plugins_get_fd3_config_sync_events_and_adjust(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    cfg = make_config(tmp_path)
    install(tmp_path / "plugins", "10-logger", f"{sys.executable} {EXAMPLES / 'event_logger.py'}")
    install(tmp_path / "plugins", "20-inject", f"{sys.executable} {EXAMPLES / 'inject_env_mount.py'}")
    (tmp_path / "plugins" / "README").write_text("not executable: ignored")
    # <name>.conf for one, <idx>-<name>.conf for the other.
    (tmp_path / "conf.d" / "logger.conf").write_text(f'path = "{events}"\n')
    (tmp_path / "conf.d" / "20-inject.conf").write_text(
        '[env]\nINJECTED = "yes"\n[[mounts]]\ndestination = "/injected"\nsource = "/srv"\noptions = ["rbind", "ro"]\n'
    )

    async def main() -> None:
        adaptation = Adaptation(cfg, state_provider=state)
        await adaptation.start()
        try:
            assert adaptation.plugins == ["10-logger", "20-inject"]
            pids = pids_of(adaptation)
            for name, pid in pids.items():
                environ, fd3 = proc_facts(pid)
                # Only NRI's three variables (PWD is added by the /bin/sh wrapper itself).
                expected = [b"NRI_PLUGIN_SOCKET=3", f"NRI_PLUGIN_IDX={name[:2]}".encode()]
                expected.append(f"NRI_PLUGIN_NAME={name[3:]}".encode())
                assert sorted(e for e in environ if e and not e.startswith(b"PWD=")) == sorted(expected)
                assert fd3.startswith("socket:")
            await adaptation.run_pod_sandbox(POD)
            result = await adaptation.create_container(POD, CTR)
            await adaptation.start_container(POD, CTR)
            await adaptation.stop_container(POD, CTR)
            await adaptation.remove_container(POD, CTR)
            await adaptation.stop_pod_sandbox(POD)
        finally:
            await adaptation.stop()
        spec: dict[str, Any] = {"process": {"env": ["PATH=/bin"]}, "mounts": []}
        apply_adjustment(spec, result.adjustment)
        assert spec["process"]["env"] == ["PATH=/bin", "INJECTED=yes"]
        assert spec["mounts"] == [
            {"destination": "/injected", "type": "bind", "source": "/srv", "options": ["rbind", "ro"]}
        ]
        log = read_events(events)
        assert log[0]["event"] == "Configure"
        assert log[0]["config"] == f'path = "{events}"\n'
        assert log[0]["runtime"] == "pycontainerd"
        assert log[1] == {"event": "Synchronize", "pods": ["pod1"], "containers": ["old"]}
        assert [e["event"] for e in log[2:]] == [
            "RunPodSandbox",
            "CreateContainer",
            "StartContainer",
            "StopContainer",
            "RemoveContainer",
            "StopPodSandbox",
            "Shutdown",
        ]
        for pid in pids.values():
            assert not alive(pid)

    run(main())


def test_external_plugin_process_over_the_socket(tmp_path: Path) -> None:
    conf = tmp_path / "inject.toml"
    conf.write_text('[env]\nFROM_SOCKET = "1"\n[match]\nlabel = "app"\n')
    cfg = make_config(tmp_path)

    async def main() -> None:
        adaptation = Adaptation(cfg)
        await adaptation.start()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pycontainerd.nri", str(EXAMPLES / "inject_env_mount.py"),
            "--socket", cfg.socket_path, "--name", "inject", "--idx", "30", "--config", str(conf),
        )  # fmt: skip
        try:
            await eventually(lambda: adaptation.plugins == ["30-inject"], 20)
            result = await adaptation.create_container(POD, CTR)
            assert [(e.key, e.value) for e in result.adjustment.env] == [("FROM_SOCKET", "1")]
            unlabelled = pod_sandbox(id="pod2", name="other")
            result = await adaptation.create_container(unlabelled, container(id="c2", pod_sandbox_id="pod2"))
            assert len(result.adjustment.env) == 0
            await adaptation.stop()
            # The plugin exits by itself once the runtime hangs up.
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await asyncio.wait_for(proc.wait(), 10)
            await adaptation.stop()

    run(main())


def test_hung_and_crashed_plugins_are_dropped(tmp_path: Path) -> None:
    script = tmp_path / "misbehaving.py"
    script.write_text(MISBEHAVING)
    events = tmp_path / "events.jsonl"
    cfg = make_config(tmp_path, plugin_request_timeout="500ms")
    install(tmp_path / "plugins", "05-hang", f"{sys.executable} {script}")
    install(tmp_path / "plugins", "06-crash", f"{sys.executable} {script}")
    install(tmp_path / "plugins", "10-logger", f"{sys.executable} {EXAMPLES / 'event_logger.py'}")
    (tmp_path / "conf.d" / "logger.conf").write_text(f'path = "{events}"\n')

    async def main() -> None:
        adaptation = Adaptation(cfg)
        await adaptation.start()
        try:
            assert adaptation.plugins == ["05-hang", "06-crash", "10-logger"]
            pids = pids_of(adaptation)
            loop = asyncio.get_running_loop()
            started = loop.time()
            await adaptation.create_container(POD, CTR)
            assert loop.time() - started < 1.5  # one request timeout for the hung one, none for the crash
            assert adaptation.plugins == ["10-logger"]
            await eventually(lambda: not alive(pids["05-hang"]) and not alive(pids["06-crash"]))
            await adaptation.start_container(POD, CTR)
        finally:
            await adaptation.stop()
        assert [e["event"] for e in read_events(events)][-3:] == ["CreateContainer", "StartContainer", "Shutdown"]

    run(main())


def test_registration_timeout_kills_a_silent_plugin(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, plugin_registration_timeout="300ms")
    install(tmp_path / "plugins", "07-silent", "/bin/sleep 31.5")

    def silent_running() -> bool:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if cmdline.read_bytes() == b"/bin/sleep\x0031.5\x00":
                    return True
            except OSError:
                continue
        return False

    async def main() -> None:
        adaptation = Adaptation(cfg)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await adaptation.start()
        try:
            assert 0.25 < loop.time() - started < 5
            assert adaptation.plugins == []
            await eventually(lambda: not silent_running())
        finally:
            await adaptation.stop()

    run(main())


def test_badly_named_plugin_file_fails_start(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    install(tmp_path / "plugins", "noindex", "/bin/true")

    async def main() -> None:
        with pytest.raises(NRIError, match="idx-pluginname expected"):
            await Adaptation(cfg).start()

    run(main())


def test_stop_removes_the_socket(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)

    async def main() -> None:
        adaptation = Adaptation(cfg)
        await adaptation.start()
        assert exists(cfg.socket_path)
        await adaptation.stop()
        assert not exists(cfg.socket_path)

    run(main())
