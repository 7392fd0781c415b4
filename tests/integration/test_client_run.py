"""The Python client runs containers: the library call that does what ``ctr run --rm`` does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest

from pycontainerd.client.run import run, run_sync
from pycontainerd.client.transfer import Client
from pycontainerd.tools.busybox import ImageInfo, build_image
from tests.support.daemon import DaemonProcess, running_daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]

NS = "client-run"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageInfo:
    return build_image(tmp_path_factory.mktemp("img") / "busybox.tar")


@pytest.fixture(params=["go-shim", "py-shim"])
def daemon(request: pytest.FixtureRequest, image: ImageInfo) -> Iterator[DaemonProcess]:
    with running_daemon(go_shim=request.param == "go-shim") as d:
        d.ctr("images", "import", str(image.path), namespace=NS)
        yield d


def test_run_collects_output_and_exit_status(daemon: DaemonProcess, image: ImageInfo) -> None:
    async def main() -> object:
        client = Client(str(daemon.address), NS)
        try:
            return await run(client, image.ref, ["sh", "-c", "echo out; echo err >&2; exit 3"], env=["X=1"])
        finally:
            await client.close()

    result = asyncio.run(main())
    assert (result.exit_status, result.stdout, result.stderr) == (3, b"out\n", b"err\n")  # type: ignore[attr-defined]
    quiet = run_sync(str(daemon.address), image.ref, ["true"], namespace=NS)
    assert (quiet.exit_status, quiet.stdout, quiet.stderr) == (0, b"", b"")
    env = run_sync(str(daemon.address), image.ref, ["sh", "-c", "echo $X"], namespace=NS, env=["X=from-python"])
    assert env.stdout == b"from-python\n"
    # Nothing left behind: no container, no task, no snapshot besides the image's chain.
    assert daemon.ctr("containers", "ls", "-q", namespace=NS).stdout.strip() == ""
    assert daemon.ctr("tasks", "ls", "-q", namespace=NS).stdout.strip() == ""
    assert "Active" not in daemon.ctr("snapshots", "ls", namespace=NS).stdout


def test_missing_image_is_not_found(daemon: DaemonProcess) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        run_sync(str(daemon.address), "example.com/nope:1", ["true"], namespace=NS)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
