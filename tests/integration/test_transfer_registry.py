"""Pull and push through the Transfer service against Debian's real docker-registry.

An image is imported locally, pushed by pycontainerd to the registry, pulled back into a fresh
namespace (fetch and unpack together) and run with the real ctr; a cross-repository push mounts
instead of uploading; verifiers can refuse a pull; the real ctr 1.6 pulls from the same registry
into pycontainerd by itself (client-side pull over our content/images/diff services).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import grpc
import pytest
from aiohttp import web

from pycontainerd.api.containerd.types.transfer import progress_pb2
from pycontainerd.client.transfer import Client
from pycontainerd.images.manifest import OCI_MANIFEST, chain_ids
from pycontainerd.images.platforms import host_platform
from pycontainerd.tools.busybox import ImageInfo, build_image
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.registry import Cut, FaultProxy, Registry, Seen, running_registry

pytestmark = [pytest.mark.integration, pytest.mark.root]

LOCAL = "docker.io/library/busybox:local"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageInfo:
    return build_image(tmp_path_factory.mktemp("img") / "busybox.tar", ref=LOCAL, extra_layers=3, files_per_layer=200)


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with running_registry() as r:
        yield r


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    verifiers = tmp_path / "verifiers"
    verifiers.mkdir()
    extra = f'[plugins."io.containerd.image-verifier.v1.bindir"]\nbin_dir = "{verifiers}"\n'
    with running_daemon(extra_config=extra) as d:
        d.verifiers = verifiers  # type: ignore[attr-defined]
        yield d


def pyctr(d: DaemonProcess, ns: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``pyctr -a SOCK -n NS ARGS`` (not checked: callers assert on the result)."""
    return subprocess.run(
        [sys.executable, "-m", "pycontainerd.cli.main", "-a", str(d.address), "-n", ns, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def transfer(d: DaemonProcess, ns: str, work: object) -> list[progress_pb2.Progress]:
    events: list[progress_pb2.Progress] = []

    async def run() -> None:
        client = Client(str(d.address), ns)
        try:
            await work(client, events.append)  # type: ignore[operator]
        finally:
            await client.close()

    asyncio.run(run())
    return events


def push(d: DaemonProcess, ns: str, remote: str, local: str = LOCAL) -> list[progress_pb2.Progress]:
    return transfer(d, ns, lambda c, p: c.push(remote, local, plain_http=True, progress=p))


def pull(d: DaemonProcess, ns: str, remote: str) -> list[progress_pb2.Progress]:
    return transfer(d, ns, lambda c, p: c.pull(remote, platforms=[host_platform()], plain_http=True, progress=p))


def test_push_then_pull_and_run(daemon: DaemonProcess, registry: Registry, image: ImageInfo) -> None:
    daemon.ctr("images", "import", "--no-unpack", str(image.path), namespace="src")
    remote = f"{registry.host}/test/busybox:1"
    pushed = push(daemon, "src", remote)
    assert pushed[-1].event == f"Completed push to {remote}"
    uploaded = {e.desc.digest for e in pushed if e.event == "complete"}
    assert set(image.layer_digests) <= uploaded and image.manifest_digest in uploaded

    events = pull(daemon, "dst", remote)
    kinds = [e.event for e in events]
    assert kinds[-1] == f"Completed pull from {remote}", kinds
    assert any(e.event == "saved" and e.name == remote for e in events)
    assert kinds.count("extracted") == len(image.layer_digests)
    assert daemon.ctr("images", "ls", "-q", namespace="dst").stdout.split() == [remote]
    assert image.manifest_digest in daemon.ctr("images", "ls", namespace="dst").stdout, (
        "same digest after the round trip"
    )
    assert "complete" in daemon.ctr("images", "check", namespace="dst").stdout
    snapshots = daemon.ctr("snapshots", "ls", namespace="dst").stdout
    for chain in chain_ids(image.diff_ids):
        assert chain in snapshots
    content = daemon.ctr("content", "ls", namespace="dst").stdout
    assert f"containerd.io/distribution.source.{registry.host.split(':')[0]}=test/busybox" in content
    out = daemon.ctr("run", "--rm", remote, "pulled", "sh", "-c", "echo pulled-ok", namespace="dst", timeout=120)
    assert out.stdout.strip() == "pulled-ok"
    # A second pull has everything: nothing is downloaded again.
    again = pull(daemon, "dst", remote)
    assert not [e for e in again if e.event == "downloading"]
    assert {e.event for e in again if e.name.startswith("layer-")} <= {"already exists", "waiting"}


def test_cross_repository_push_mounts(daemon: DaemonProcess, registry: Registry, image: ImageInfo) -> None:
    daemon.ctr("images", "import", "--no-unpack", str(image.path), namespace="src")
    result = pyctr(daemon, "src", "images", "push", "--plain-http", f"{registry.host}/one/busybox:1", LOCAL)
    assert result.returncode == 0 and "pushed" in result.stdout, result.stderr
    pull(daemon, "mnt", f"{registry.host}/one/busybox:1")  # labels record where the blobs live
    events = push(daemon, "mnt", f"{registry.host}/two/busybox:1", f"{registry.host}/one/busybox:1")
    layer_events = {e.event for e in events if e.name.startswith("layer-") and e.event != "uploading"}
    assert layer_events == {"mounted"}, layer_events


def test_verifier_refusal_stops_the_pull(daemon: DaemonProcess, registry: Registry, image: ImageInfo) -> None:
    daemon.ctr("images", "import", "--no-unpack", str(image.path), namespace="src")
    remote = f"{registry.host}/verified/busybox:1"
    push(daemon, "src", remote)
    verifier = daemon.verifiers / "deny"  # type: ignore[attr-defined]
    verifier.write_text("#!/bin/sh\necho not signed by us\nexit 1\n")
    verifier.chmod(verifier.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        pull(daemon, "refused", remote)
    assert "blocked pull" in (err.value.details() or "") and "not signed by us" in (err.value.details() or "")
    assert daemon.ctr("content", "ls", "-q", namespace="refused", check=False).stdout.strip() == ""
    verifier.unlink()
    pull(daemon, "refused", remote)


def test_pull_of_unknown_tag_is_not_found(daemon: DaemonProcess, registry: Registry) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        pull(daemon, "missing", f"{registry.host}/nothing/here:1")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_real_ctr_pulls_from_the_registry_into_pycontainerd(
    daemon: DaemonProcess, registry: Registry, image: ImageInfo
) -> None:
    daemon.ctr("images", "import", "--no-unpack", str(image.path), namespace="src")
    remote = f"{registry.host}/ctr/busybox:1"
    push(daemon, "src", remote)
    daemon.ctr("images", "pull", "--plain-http", remote, namespace="ctrpull", timeout=120)
    out = daemon.ctr("run", "--rm", remote, "ctrpulled", "echo", "ctr-ok", namespace="ctrpull", timeout=120)
    assert out.stdout.strip() == "ctr-ok"


def test_credentials_travel_over_the_auth_stream(daemon: DaemonProcess, image: ImageInfo, tmp_path: Path) -> None:
    with running_registry(users={"alice": "s3cret"}) as secured:
        daemon.ctr("images", "import", "--no-unpack", str(image.path), namespace="src")
        remote = f"{secured.host}/private/busybox:1"
        creds = ("alice", "s3cret")
        transfer(daemon, "src", lambda c, p: c.push(remote, LOCAL, plain_http=True, credentials=creds, progress=p))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            pull(daemon, "anon", remote)
        assert err.value.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            transfer(daemon, "bad", lambda c, p: c.pull(remote, plain_http=True, credentials=("alice", "wrong")))
        assert wrong.value.code() == grpc.StatusCode.PERMISSION_DENIED, wrong.value.details()
        assert "authoriz" in (wrong.value.details() or "").lower(), wrong.value.details()
        result = pyctr(daemon, "authed", "images", "pull", "--plain-http", "--user", "alice:s3cret", remote)
        assert result.returncode == 0, result.stderr
        assert f"{remote}: pulled" in result.stdout
        assert daemon.ctr("images", "ls", "-q", namespace="authed").stdout.split() == [remote]
        # Without --user, pyctr answers with the login in docker's config.json.
        docker_config = tmp_path / "docker"
        docker_config.mkdir()
        token = base64.b64encode(b"alice:s3cret").decode()
        (docker_config / "config.json").write_text(json.dumps({"auths": {secured.host: {"auth": token}}}))
        result = pyctr(
            daemon,
            "dockerlogin",
            "images",
            "pull",
            "--plain-http",
            remote,
            env={**os.environ, "DOCKER_CONFIG": str(docker_config)},
        )
        assert result.returncode == 0, result.stderr


def test_pull_fetches_referrers_through_the_fallback_tag(registry: Registry, image: ImageInfo) -> None:
    from pycontainerd.core.images import Descriptor
    from pycontainerd.remotes.client import RegistryClient

    repo = f"{registry.host}/signed/busybox"
    empty = b"{}"
    signature = b"a signature over the manifest"
    config_desc = Descriptor("application/vnd.oci.empty.v1+json", _sha(empty), len(empty))
    layer_desc = Descriptor("application/vnd.example.signature", _sha(signature), len(signature))
    subject = {"mediaType": OCI_MANIFEST, "digest": image.manifest_digest, "size": _manifest_size(image)}
    artifact = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.signature",
            "config": {"mediaType": config_desc.media_type, "digest": config_desc.digest, "size": 2},
            "layers": [{"mediaType": layer_desc.media_type, "digest": layer_desc.digest, "size": len(signature)}],
            "subject": subject,
        }
    ).encode()
    artifact_desc = Descriptor(OCI_MANIFEST, _sha(artifact), len(artifact))
    fallback = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": artifact_desc.digest,
                    "size": artifact_desc.size,
                    "artifactType": "application/vnd.example.signature",
                }
            ],
        }
    ).encode()
    fallback_desc = Descriptor("application/vnd.oci.image.index.v1+json", _sha(fallback), len(fallback))

    with running_daemon() as src:
        src.ctr("images", "import", "--no-unpack", str(image.path), namespace="src")
        push(src, "src", f"{repo}:1")

    async def sign() -> None:
        async with RegistryClient(default_scheme="http") as client:
            pusher = client.pusher(f"{repo}:1")
            await pusher.push_blob(config_desc, empty)
            await pusher.push_blob(layer_desc, signature)
            await pusher.push_manifest(artifact_desc, artifact)
            await pusher.push_manifest(fallback_desc, fallback, tag=image.manifest_digest.replace(":", "-"))

    asyncio.run(sign())
    extra = '[plugins."io.containerd.transfer.v1.local"]\nfetch_referrers = true\n'
    with running_daemon(extra_config=extra) as d:
        events = pull(d, "signed", f"{repo}:1")
        assert any(e.event == "referrers" for e in events)
        content = d.ctr("content", "ls", namespace="signed").stdout
        assert artifact_desc.digest in content and layer_desc.digest in content
        assert f"containerd.io/gc.ref.content.referrer.sha256.0={artifact_desc.digest}" in content
        # The GC keeps the signature as long as the image, and lets it go with it.
        d.ctr("images", "rm", "--sync", f"{repo}:1", namespace="signed")
        assert artifact_desc.digest not in d.ctr("content", "ls", namespace="signed").stdout


def _sha(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def _manifest_size(image: ImageInfo) -> int:
    import tarfile

    with tarfile.open(image.path) as tf:
        return tf.getmember(f"blobs/sha256/{image.manifest_digest.split(':')[1]}").size


# -- faults, through the daemon: a proxy in the test's event loop sits before the registry --------


def with_proxy(
    d: DaemonProcess, registry: Registry, ns: str, work: Callable[[Client, FaultProxy], Awaitable[None]]
) -> FaultProxy:
    async def run() -> FaultProxy:
        async with FaultProxy(registry.host) as proxy:
            client = Client(str(d.address), ns)
            try:
                await work(client, proxy)
            finally:
                await client.close()
            return proxy

    return asyncio.run(run())


def _prepared(d: DaemonProcess, registry: Registry, image: ImageInfo, repo: str) -> str:
    """Push the image from another daemon: ``d`` must hold none of its blobs (a namespace
    may reuse a blob another one holds without receiving its bytes)."""
    del d
    return _prepared_image(registry, image, repo)


def _prepared_image(registry: Registry, image: ImageInfo, repo: str) -> str:
    remote = f"{registry.host}/{repo}:1"
    with running_daemon() as other:
        other.ctr("images", "import", "--no-unpack", str(image.path), namespace="src")
        push(other, "src", remote, image.ref)
    return remote


def test_pull_through_a_hosts_toml_mirror(
    daemon: DaemonProcess, registry: Registry, image: ImageInfo, tmp_path: Path
) -> None:
    _prepared(daemon, registry, image, "mirrored/busybox")
    domain = "upstream.invalid"
    hosts = tmp_path / "certs.d"

    async def work(client: Client, mirror: FaultProxy) -> None:
        (hosts / domain).mkdir(parents=True)
        (hosts / domain / "hosts.toml").write_text(
            f'server = "http://{registry.host}"\n[host."http://{mirror.host}"]\n  capabilities = ["pull", "resolve"]\n'
        )
        await client.pull(f"{domain}/mirrored/busybox:1", platforms=[host_platform()], hosts_dir=str(hosts))

    mirror = with_proxy(daemon, registry, "mirror", work)
    gets = mirror.requests("GET", "/blobs/")
    assert {g.path.rsplit("/", 1)[-1] for g in gets} >= set(image.layer_digests)
    assert all(g.query.get("ns") == [domain] for g in gets)
    assert daemon.ctr("images", "ls", "-q", namespace="mirror").stdout.split() == [f"{domain}/mirrored/busybox:1"]


def test_cut_connection_resumes_mid_layer(daemon: DaemonProcess, registry: Registry, image: ImageInfo) -> None:
    _prepared(daemon, registry, image, "cut/busybox")
    big = max(zip(image.layer_digests, _layer_sizes(image), strict=True), key=lambda p: p[1])

    async def work(client: Client, proxy: FaultProxy) -> None:
        proxy.cuts.append(Cut(lambda s: s.method == "GET" and big[0] in s.path, big[1] // 2))
        await client.pull(f"{proxy.host}/cut/busybox:1", platforms=[host_platform()], plain_http=True)

    proxy = with_proxy(daemon, registry, "cut", work)
    gets = proxy.requests("GET", big[0])
    assert len(gets) == 2, [g.headers.get("Range") for g in gets]
    assert gets[1].headers.get("Range", "").startswith("bytes=") and gets[1].headers["Range"] != "bytes=0-"
    assert "complete" in daemon.ctr("images", "check", namespace="cut").stdout
    out = daemon.ctr("run", "--rm", f"{proxy.host}/cut/busybox:1", "cutrun", "echo", "whole", namespace="cut")
    assert out.stdout.strip() == "whole"


def test_tampered_blob_is_refused_and_nothing_stored(
    daemon: DaemonProcess, registry: Registry, image: ImageInfo
) -> None:
    _prepared(daemon, registry, image, "tampered/busybox")
    victim, size = image.layer_digests[-1], _layer_sizes(image)[-1]

    async def tamper(request: web.Request, seen: Seen) -> web.StreamResponse | None:
        if seen.method == "GET" and victim in seen.path:
            return web.Response(body=b"\x1f\x8b" + b"\0" * (size - 2), content_type="application/octet-stream")
        return None

    async def work(client: Client, proxy: FaultProxy) -> None:
        proxy.hooks.append(tamper)
        await client.pull(f"{proxy.host}/tampered/busybox:1", platforms=[host_platform()], plain_http=True)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        with_proxy(daemon, registry, "tampered", work)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, err.value.details()
    assert "digest" in (err.value.details() or "")
    assert victim not in daemon.ctr("content", "ls", "-q", namespace="tampered").stdout
    assert daemon.ctr("images", "ls", "-q", namespace="tampered").stdout.strip() == ""
    assert "extract-" not in daemon.ctr("snapshots", "ls", namespace="tampered").stdout


def test_schema1_manifest_is_refused_clearly(daemon: DaemonProcess, registry: Registry) -> None:
    schema1 = json.dumps({"schemaVersion": 1, "name": "old/app", "tag": "1", "fsLayers": []}).encode()

    async def old_registry(request: web.Request, seen: Seen) -> web.StreamResponse | None:
        if "/manifests/" in seen.path:
            media = "application/vnd.docker.distribution.manifest.v1+prettyjws"
            headers = {"Docker-Content-Digest": _sha(schema1)}
            return web.Response(body=schema1 if seen.method == "GET" else None, content_type=media, headers=headers)
        return None

    async def work(client: Client, proxy: FaultProxy) -> None:
        proxy.hooks.append(old_registry)
        await client.pull(f"{proxy.host}/old/app:1", plain_http=True)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        with_proxy(daemon, registry, "old", work)
    details = err.value.details() or ""
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "manifest.v1" in details and "no longer supported" in details, details


def _layer_sizes(image: ImageInfo) -> list[int]:
    import tarfile

    with tarfile.open(image.path) as tf:
        return [tf.getmember(f"blobs/sha256/{d.split(':')[1]}").size for d in image.layer_digests]


def _test_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "key.pem", "req.csr", "cert.pem"))
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=pycontainerd test CA",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
    )
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(ext),
        "-out",
        str(cert),
    )
    return ca, cert, key


def test_pull_over_tls_with_a_test_ca(daemon: DaemonProcess, image: ImageInfo, tmp_path: Path) -> None:
    ca, cert, key = _test_ca(tmp_path)
    with running_registry(tls=(cert, key)) as secure:
        remote = f"{secure.host}/tls/busybox:1"
        hosts = tmp_path / "certs.d"
        (hosts / secure.host).mkdir(parents=True)
        (hosts / secure.host / "hosts.toml").write_text(
            f'server = "https://{secure.host}"\n[host."https://{secure.host}"]\n  ca = "{ca}"\n'
        )
        daemon.ctr("images", "import", "--no-unpack", str(image.path), namespace="src")
        transfer(daemon, "src", lambda c, p: c.push(remote, LOCAL, hosts_dir=str(hosts), progress=p))
        transfer(daemon, "tls", lambda c, p: c.pull(remote, platforms=[host_platform()], hosts_dir=str(hosts)))
        assert daemon.ctr("images", "ls", "-q", namespace="tls").stdout.split() == [remote]
        # Configured without the CA, the registry's certificate is not trusted. (Unconfigured,
        # a localhost registry is reached with checks off, as containerd does.)
        untrusted = tmp_path / "untrusted.d"
        (untrusted / secure.host).mkdir(parents=True)
        (untrusted / secure.host / "hosts.toml").write_text(f'server = "https://{secure.host}"\n')
        with pytest.raises(grpc.aio.AioRpcError) as err:
            transfer(
                daemon, "untrusted", lambda c, p: c.pull(remote, platforms=[host_platform()], hosts_dir=str(untrusted))
            )
        assert "certificate" in (err.value.details() or "").lower(), err.value.details()


def test_mirror_registry_to_registry(daemon: DaemonProcess, registry: Registry, image: ImageInfo) -> None:
    source = _prepared(daemon, registry, image, "mirror-src/busybox")
    with running_registry() as other:
        destination = f"{other.host}/copied/busybox:1"
        result = pyctr(daemon, "mirror", "images", "mirror", "--plain-http", source, destination)
        assert result.returncode == 0, result.stderr
        assert daemon.ctr("images", "ls", "-q", namespace="mirror").stdout.strip() == "", "no image record"
        pull(daemon, "frommirror", destination)
        out = daemon.ctr("images", "ls", namespace="frommirror").stdout
        assert image.manifest_digest in out, "the same manifest digest on the other registry"


def test_pull_after_kill_9_resumes_the_ingest(registry: Registry, tmp_path: Path) -> None:
    """kill -9 of the daemon in the middle of a layer: the next pull continues that ingest with a
    Range request instead of starting the layer again, and the image is complete."""
    big = build_image(tmp_path / "big.tar", ref="docker.io/library/big:kill", extra_layers=1, files_per_layer=300,
                      file_bytes=30000)  # fmt: skip
    sizes = dict(zip(big.layer_digests, _layer_sizes(big), strict=True))
    layer = max(sizes, key=sizes.__getitem__)
    _prepared_image(registry, big, "killed/big")
    release = asyncio.Event()

    with running_daemon() as d:

        async def first(client: Client, proxy: FaultProxy) -> None:
            async def stall(request: web.Request, seen: Seen) -> web.StreamResponse | None:
                if seen.method == "GET" and layer in seen.path and "Range" not in seen.headers:
                    response = web.StreamResponse(headers={"Content-Length": str(sizes[layer])})
                    await response.prepare(request)
                    blob = (
                        registry.root / "docker/registry/v2/blobs/sha256" / layer[7:9] / layer[7:] / "data"
                    ).read_bytes()
                    await response.write(blob[: sizes[layer] // 2])
                    await release.wait()  # the daemon is killed meanwhile
                return None

            proxy.hooks.append(stall)
            pulling = asyncio.ensure_future(
                client.pull(f"{proxy.host}/killed/big:1", platforms=[host_platform()], plain_http=True)
            )
            deadline = time.monotonic() + 30
            while "layer-" + layer not in d.ctr("content", "active", namespace="killed").stdout:
                assert time.monotonic() < deadline, "the download never started"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            d.kill()
            release.set()
            with contextlib.suppress(Exception):
                await pulling

        proxy = with_proxy(d, registry, "killed", first)
        del proxy
        d.start()
        active = d.ctr("content", "active", namespace="killed").stdout
        assert "layer-" + layer in active, "the half-downloaded ingest survived the kill"

        async def second(client: Client, proxy: FaultProxy) -> None:
            await client.pull(f"{proxy.host}/killed/big:1", platforms=[host_platform()], plain_http=True)

        again = with_proxy(d, registry, "killed", second)
        gets = again.requests("GET", layer)
        assert len(gets) == 1 and gets[0].headers.get("Range", "").startswith("bytes="), [g.headers for g in gets]
        assert gets[0].headers["Range"] != "bytes=0-"
        assert "complete" in d.ctr("images", "check", namespace="killed").stdout
