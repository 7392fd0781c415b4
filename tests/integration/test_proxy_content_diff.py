"""``[proxy_plugins]`` of type ``content`` and ``diff``: blobs kept, and layers applied, by other processes.

The other processes are ours: ``python -m pycontainerd.content.service`` (a plain local store
behind containerd's Content API) and ``python -m pycontainerd.diff.service`` (a differ that
reads the layers back from the daemon's Content API). The daemon is driven with Debian's
``ctr`` 1.6 (client-side unpack through the Diff service) and with ``pyctr`` (Transfer API:
import, push and pull, unpacked by the daemon). Debian's real containerd 1.6 is the referee
for the content server (1.6 has no ``diff`` proxies: it logs "unknown proxy plugin type").
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pycontainerd.images.manifest import chain_ids
from pycontainerd.tools.busybox import ImageInfo, build_image
from tests.support.daemon import CTR, DaemonProcess, private_dir, running_daemon, write_config
from tests.support.real_containerd import real_containerd
from tests.support.registry import Registry, running_registry

pytestmark = [pytest.mark.integration, pytest.mark.root]

NS = "pxcontent"
LOCAL_CONTENT = "io.containerd.content.v1.content"
DISABLE_LOCAL = f'disabled_plugins = ["{LOCAL_CONTENT}"]'


@dataclass
class Served:
    """A proxy plugin process: its socket, its root (content only) and its log."""

    sock: Path
    root: Path
    log_path: Path
    proc: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def blobs(self) -> set[str]:
        d = self.root / "blobs" / "sha256"
        return {f"sha256:{p.name}" for p in d.iterdir()} if d.is_dir() else set()


@contextlib.contextmanager
def serve(base: Path, name: str, module: str, *args: str) -> Iterator[Served]:
    sock, log_path = base / f"{name}.sock", base / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", module, "--address", str(sock), *args], stdout=log, stderr=log)
    served = Served(sock, base / f"{name}-root", log_path, proc)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, f"{module} did not start:\n{served.log()}"
            time.sleep(0.05)
        yield served
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def content_server(base: Path) -> Iterator[Served]:
    with serve(base, "content", "pycontainerd.content.service", "--root", str(base / "content-root")) as s:
        yield s


def content_proxy(sock: Path, name: str = "remote") -> str:
    return f'[proxy_plugins.{name}]\n  type = "content"\n  address = "{sock}"\n'


def pyctr(d: DaemonProcess, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pycontainerd.cli.main", "-a", str(d.address), "-n", ns, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"pyctr {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def plugin_rows(d: DaemonProcess) -> list[list[str]]:
    return [line.split() for line in d.ctr("plugins", "ls").stdout.splitlines()[1:]]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageInfo:
    return build_image(tmp_path_factory.mktemp("img") / "busybox.tar", extra_layers=1, files_per_layer=20)


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with running_registry() as r:
        yield r


# -- content --------------------------------------------------------------------------------


def test_content_proxy_holds_every_blob(image: ImageInfo, registry: Registry) -> None:
    with (
        private_dir("pxc-") as base,
        content_server(base) as remote,
        running_daemon(extra_config=content_proxy(remote.sock), top_level=DISABLE_LOCAL) as d,
    ):
        rows = plugin_rows(d)
        assert ["io.containerd.content.v1", "remote", "-", "ok"] in rows, rows
        assert not any(r[:2] == ["io.containerd.content.v1", "content"] for r in rows), rows

        # ctr 1.6: content written through the Content API, unpacked through the Diff service
        # (the walking differ reading the layers back from the proxy).
        d.ctr("images", "import", str(image.path), namespace=NS)
        listed = set(d.ctr("content", "ls", "-q", namespace=NS).stdout.split())
        assert {image.manifest_digest, image.config_digest, *image.layer_digests} <= listed
        assert listed == remote.blobs(), "every blob lives in the proxy's root, and only there"
        assert not (d.root / LOCAL_CONTENT).exists()
        blob = remote.root / "blobs" / "sha256" / image.config_digest.split(":")[1]
        got = subprocess.run(
            [CTR, "-a", str(d.address), "-n", NS, "content", "get", image.config_digest],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        assert got == blob.read_bytes()
        out = d.ctr("run", "--rm", image.ref, "viacontent", "echo", "proxied-content", namespace=NS)
        assert out.stdout.strip() == "proxied-content"

        # The Transfer engine: import (unpack streams layers from the proxy), push (reads them
        # from the proxy), pull (follows no ingest file: each layer is read once committed).
        pyctr(d, "xfer", "images", "import", str(image.path))
        remote_ref = f"{registry.host}/pxcontent/busybox:1"
        pyctr(d, NS, "images", "push", "--plain-http", remote_ref, image.ref)
        pulled = pyctr(d, "pulled", "images", "pull", "--plain-http", remote_ref)
        assert "extracted" in pulled.stdout + pulled.stderr
        out = d.ctr("run", "--rm", remote_ref, "pulled1", "echo", "pulled-via-proxy", namespace="pulled")
        assert out.stdout.strip() == "pulled-via-proxy"

        # Garbage collection deletes through the proxy once no namespace holds a blob.
        held = remote.blobs()
        for ns, ref in ((NS, image.ref), ("xfer", image.ref), ("pulled", remote_ref)):
            d.ctr("images", "rm", "--sync", ref, namespace=ns)
        assert remote.blobs() == set(), remote.blobs()
        assert all(f"deleted {digest}" in remote.log() for digest in held)


def test_content_proxy_down_fails_calls_with_unavailable(image: ImageInfo) -> None:
    with (
        private_dir("pxd-") as base,
        content_server(base) as remote,
        running_daemon(extra_config=content_proxy(remote.sock), top_level=DISABLE_LOCAL) as d,
    ):
        d.ctr("images", "import", "--no-unpack", str(image.path), namespace=NS)
        remote.proc.terminate()
        remote.proc.wait(10)
        got = d.ctr("content", "get", image.config_digest, namespace=NS, check=False)
        assert got.returncode != 0 and "unavailable" in got.stderr.lower(), got.stderr
        # (ctr 1.6 retries an Unavailable writer without end; the Transfer API reports it.)
        imported = pyctr(d, "other", "images", "import", str(image.path), check=False)
        assert imported.returncode != 0 and "unavailable" in imported.stderr.lower(), imported.stderr
        assert d.ctr("version").returncode == 0
        # The records stayed: with the proxy back (same root), the blob reads again.
        with content_server(base) as again:
            assert again.blobs() >= {image.config_digest}
            deadline = time.monotonic() + 10  # the daemon reconnects within its backoff (1 s at most)
            while (got := d.ctr("content", "get", image.config_digest, namespace=NS, check=False)).returncode:
                assert time.monotonic() < deadline, got.stderr
                time.sleep(0.2)
            assert got.stdout.startswith("{")


def test_two_content_plugins_refuse_to_start(tmp_path: Path) -> None:
    with private_dir("pxt-") as base:
        config = base / "config.toml"
        write_config(config, base, content_proxy(tmp_path / "absent.sock", name="second"))
        d = DaemonProcess(base=base, config_path=config)
        d.start(wait=False)
        assert d.proc is not None
        assert d.proc.wait(60) == 1, d.log()
        log = d.log()
        assert "multiple content plugins loaded" in log, log
        assert LOCAL_CONTENT in log and "io.containerd.content.v1.second" in log, log
        assert not d.address.exists()


def test_real_containerd_uses_our_content_server(image: ImageInfo) -> None:
    with (
        private_dir("pxr-") as base,
        content_server(base) as remote,
        real_containerd(extra_config=content_proxy(remote.sock), disabled=(LOCAL_CONTENT,)) as sock,
    ):

        def ctr(*args: str) -> str:
            return subprocess.run(
                [CTR, "-a", str(sock), "-n", NS, *args], capture_output=True, text=True, check=True, timeout=120
            ).stdout

        ctr("images", "import", str(image.path))
        listed = set(ctr("content", "ls", "-q").split())
        assert {image.manifest_digest, image.config_digest, *image.layer_digests} <= listed
        assert listed == remote.blobs()
        assert ctr("run", "--rm", image.ref, "realpx", "echo", "real-containerd").strip() == "real-containerd"
        ctr("images", "rm", "--sync", image.ref)
        assert remote.blobs() == set()


# -- diff -----------------------------------------------------------------------------------


def diff_proxy(sock: Path, name: str = "rdiff") -> str:
    return (
        f'[proxy_plugins.{name}]\n  type = "diff"\n  address = "{sock}"\n'
        f'[plugins."io.containerd.service.v1.diff-service"]\n  default = ["{name}", "walking"]\n'
    )


def applies(differ: Served) -> int:
    return sum(1 for line in differ.log().splitlines() if " INFO apply sha256:" in line)


def test_diff_proxy_first_applies_every_unpack(image: ImageInfo, registry: Registry) -> None:
    layers = len(image.layer_digests)
    with (
        private_dir("pxf-") as base,
        running_daemon(extra_config=diff_proxy(base / "diff.sock")) as d,
        serve(base, "diff", "pycontainerd.diff.service", "--content-address", str(d.address)) as differ,
    ):
        rows = plugin_rows(d)
        assert ["io.containerd.differ.v1", "rdiff", "-", "ok"] in rows, rows
        # ctr 1.6 unpacks through the Diff service: every layer goes to the remote differ,
        # which reads it from this daemon's Content API in the caller's namespace.
        d.ctr("images", "import", str(image.path), namespace=NS)
        assert applies(differ) == layers, differ.log()
        assert f"in namespace {NS}" in differ.log()
        out = d.ctr("run", "--rm", image.ref, "viadiff", "ls", "/data/layer0/d0", namespace=NS)
        assert "f19" in out.stdout.split(), out.stdout
        # The Transfer engine's unpack follows the same order: import, then a pull.
        pyctr(d, "xfer", "images", "import", str(image.path))
        assert applies(differ) == 2 * layers
        remote_ref = f"{registry.host}/pxdiff/busybox:1"
        pyctr(d, NS, "images", "push", "--plain-http", remote_ref, image.ref)
        pyctr(d, "pulled", "images", "pull", "--plain-http", remote_ref)
        assert applies(differ) == 3 * layers
        out = d.ctr("run", "--rm", remote_ref, "pulleddiff", "echo", "diff-pulled", namespace="pulled")
        assert out.stdout.strip() == "diff-pulled"
        # Diff (compare) goes there too: a layer made from a snapshot by the remote, written
        # back into our content store.
        d.ctr("snapshots", "prepare", "work", chain_ids(image.diff_ids)[-1], namespace=NS)
        layer = subprocess.run(
            [CTR, "-a", str(d.address), "-n", NS, "snapshots", "diff", "work"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        assert layer[:2] == b"\x1f\x8b"
        assert " INFO diff into " in differ.log()
        digest = "sha256:" + hashlib.sha256(layer).hexdigest()
        assert digest in d.ctr("content", "ls", "-q", namespace=NS).stdout.split()


def test_builtin_differ_stays_the_default(image: ImageInfo) -> None:
    """With a diff proxy loaded but not named in the order, unpack stays in the daemon."""
    with private_dir("pxb-") as base:
        proxy = f'[proxy_plugins.idle]\n  type = "diff"\n  address = "{base / "idle.sock"}"\n'
        with running_daemon(extra_config=proxy) as d:
            d.ctr("images", "import", str(image.path), namespace=NS)  # the idle socket does not even exist
            assert d.ctr("run", "--rm", image.ref, "local", "true", namespace=NS).returncode == 0
            rows = plugin_rows(d)
            assert ["io.containerd.service.v1", "diff-service", "-", "ok"] in rows, rows


def test_diff_order_naming_a_missing_differ_fails_the_service(image: ImageInfo) -> None:
    extra = '[plugins."io.containerd.service.v1.diff-service"]\n  default = ["nosuch"]\n'
    with running_daemon(extra_config=extra) as d:
        rows = plugin_rows(d)
        assert ["io.containerd.service.v1", "diff-service", "-", "error"] in rows, rows
        detail = d.ctr("plugins", "ls", "-d", "id==diff-service").stdout
        assert "needed differ not loaded: nosuch" in detail, detail
