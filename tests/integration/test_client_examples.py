"""The client library's documented examples (examples/client/) run against a real daemon."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd.tools.busybox import build_image
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.registry import Registry, running_registry

pytestmark = [pytest.mark.integration, pytest.mark.root]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "client"
LOCAL = "docker.io/library/busybox:examples"


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with running_registry() as r:
        yield r


@pytest.fixture(scope="module")
def remote(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    archive = build_image(tmp_path_factory.mktemp("img") / "bb.tar", ref=LOCAL)
    ref = f"{registry.host}/library/busybox:examples"
    with running_daemon() as d:
        d.ctr("images", "import", str(archive.path), namespace="push")
        from tests.integration.test_transfer_registry import push

        push(d, "push", ref, LOCAL)
    return ref


def example(d: DaemonProcess, script: str, *args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--address", str(d.address), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("go_shim", [False, True], ids=["pyshim", "goshim"])
def test_lifecycle_and_inventory_examples(remote: str, go_shim: bool) -> None:
    with running_daemon(go_shim=go_shim) as d:
        lines = example(d, "lifecycle.py", "--plain-http", remote)
        assert "out: hello from the asyncio client on lifecycle" in lines
        assert "exec: lifecycle" in lines, "\n".join(lines)
        assert lines[-1] == "exit: 7" or "exit: 7" in lines
        events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
        for topic in ("/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started", "/tasks/exit"):
            assert topic in events, events
        assert events.index("/tasks/create") < events.index("/tasks/start") < events.index("/tasks/exec-added")
        # The exec's exit follows its start event, the container's exit comes last (then delete).
        assert events.index("/tasks/exec-started") < events.index("/tasks/exit")
        assert events.count("/tasks/exit") == 2 and events[-1] == "/tasks/delete"
        assert d.ctr("containers", "ls", "-q", namespace="examples").stdout.strip() == "", "cleaned up"

        lines = example(d, "inventory.py", remote)
        assert lines[0].startswith("server: ")
        assert "namespace: examples" in lines
        assert any(line.startswith(f"image: {remote} sha256:") for line in lines)
        assert lines[-1] == "run: exit 3 output 'one-off'"


def test_sync_client_blocks_on_every_service_and_iterates_events() -> None:
    import threading

    from pycontainerd.client import SyncClient
    from pycontainerd.errdefs import NotFound

    with running_daemon() as d, SyncClient(str(d.address), "sync") as client:
        assert "made-by-ctr" not in [n.name for n in client.namespaces.list()]
        with pytest.raises(NotFound):
            client.containers.get("absent")
        stream = client.events.subscribe(['topic~="/namespaces/"'])
        threading.Timer(0.5, lambda: d.ctr("namespaces", "create", "made-by-ctr")).start()
        first = next(stream)
        assert first.topic == "/namespaces/create" and first.namespace == "made-by-ctr"
        stream.close()
        assert "made-by-ctr" in [n.name for n in client.namespaces.list()]
