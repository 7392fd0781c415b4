"""The registry client against Debian's real docker-registry, with a fault-injecting proxy in between.

The image is the deterministic busybox built by ``pycontainerd.tools.busybox``; the tests push it
themselves, then resolve and fetch it back. The proxy records every request, so each test checks
the wire behaviour too: which requests, which headers (``Range``, ``Content-Range``,
``Authorization``), how many retries.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import math
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from aiohttp import web

from pycontainerd.content.local.store import LocalStore
from pycontainerd.core.images import Descriptor
from pycontainerd.errdefs import NotFound, PermissionDenied, Unavailable
from pycontainerd.metadata.content import ContentStore
from pycontainerd.metadata.db import DB
from pycontainerd.namespaces import RequestContext
from pycontainerd.remotes import (
    Credentials,
    Limits,
    PushResult,
    RegistryClient,
    RetryPolicy,
    docker_config_credentials,
    static_credentials,
)
from pycontainerd.tools.busybox import build_image
from tests.support.registry import Cut, FaultProxy, Registry, Seen, answer_n_times, bcrypt_hash, running_registry

pytestmark = [pytest.mark.integration, pytest.mark.root]

CTX = RequestContext(namespace="registry-test")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Image:
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]
    blobs: dict[str, bytes]

    @property
    def big(self) -> Descriptor:
        """The largest layer (the busybox binary, ~1 MB)."""
        return max(self.layers, key=lambda d: d.size)

    def blob_descs(self) -> list[Descriptor]:
        return [self.config, *self.layers]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    path = build_image(tmp_path_factory.mktemp("img") / "busybox.tar", extra_layers=1, files_per_layer=50).path
    blobs: dict[str, bytes] = {}
    with tarfile.open(path) as tf:
        for member in tf.getmembers():
            if member.name.startswith("blobs/sha256/") and member.isfile():
                data = tf.extractfile(member).read()  # type: ignore[union-attr]
                blobs[sha(data)] = data
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
    m = index["manifests"][0]
    manifest = Descriptor(m["mediaType"], m["digest"], m["size"])
    raw = json.loads(blobs[manifest.digest])

    def desc(d: dict[str, object]) -> Descriptor:
        return Descriptor(str(d["mediaType"]), str(d["digest"]), int(d["size"]))  # type: ignore[call-overload]

    return Image(manifest, desc(raw["config"]), tuple(desc(d) for d in raw["layers"]), blobs)


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with running_registry() as reg:
        yield reg


def client(**kwargs: object) -> RegistryClient:
    """A client with quick retries and no proxy environment."""
    kwargs.setdefault("retry", RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05))
    return RegistryClient(trust_env=False, **kwargs)  # type: ignore[arg-type]


async def push_image(
    c: RegistryClient, ref: str, img: Image, *, chunk_size: int = 0, mount_from: tuple[str, ...] = ()
) -> list[PushResult]:
    pusher = c.pusher(ref)
    results = [
        await pusher.push_blob(d, img.blobs[d.digest], chunk_size=chunk_size, mount_from=mount_from)
        for d in img.blob_descs()
    ]
    results.append(await pusher.push_manifest(img.manifest, img.blobs[img.manifest.digest], tag=pusher.ref.tag))
    return results


def blob_gets(proxy: FaultProxy, desc: Descriptor) -> list[Seen]:
    return proxy.requests("GET", f"/blobs/{desc.digest}")


# -- push, resolve, fetch ------------------------------------------------------------------------


def test_monolithic_push_then_resolve_and_fetch(registry: Registry, image: Image) -> None:
    async def run() -> None:
        async with FaultProxy(registry.host) as proxy, client() as c:
            ref = f"{proxy.host}/mono/busybox:v1"
            results = await push_image(c, ref, image)
            assert [r.status for r in results] == ["uploaded"] * len(results)
            # Monolithic: one POST and one PUT per blob, never a PATCH.
            assert not proxy.requests("PATCH")
            puts = proxy.requests("PUT", "/blobs/uploads/")
            assert sorted(p.query["digest"][0] for p in puts) == sorted(d.digest for d in image.blob_descs())
            assert all(len(p.body) == image.blobs[p.query["digest"][0]].__len__() for p in puts)
            manifest_put = proxy.requests("PUT", "/manifests/v1")
            assert manifest_put[0].headers["Content-Type"] == image.manifest.media_type

            again = await push_image(c, ref, image)
            assert [r.status for r in again] == ["exists"] * len(again)

            name, desc = await c.resolve(ref)
            assert name == ref
            assert (desc.digest, desc.size, desc.media_type) == (
                image.manifest.digest,
                image.manifest.size,
                image.manifest.media_type,
            )
            heads = proxy.requests("HEAD", "/manifests/v1")
            accept = heads[-1].headers["Accept"]
            for media in ("oci.image.manifest", "oci.image.index", "docker.distribution.manifest.v2", "list.v2"):
                assert media in accept

            by_digest = f"{proxy.host}/mono/busybox@{image.manifest.digest}"
            assert (await c.resolve(by_digest))[1].digest == image.manifest.digest
            both = f"{proxy.host}/mono/busybox:v1@{image.manifest.digest}"
            assert (await c.resolve(both))[1].digest == image.manifest.digest

            fetcher = c.fetcher(name)
            assert await fetcher.read(desc) == image.blobs[image.manifest.digest]
            events: list[tuple[int, int]] = []
            for d in image.blob_descs():
                got = await fetcher.read(d, progress=lambda _d, done, total: events.append((done, total)))
                assert sha(got) == d.digest
            assert events[-1] == (image.layers[-1].size, image.layers[-1].size)
            assert all(a[0] <= b[0] for a, b in itertools.pairwise(events) if a[1] == b[1])

    asyncio.run(run())


def test_chunked_push(registry: Registry, image: Image) -> None:
    chunk = 256 * 1024

    async def run() -> None:
        async with FaultProxy(registry.host) as proxy, client() as c:
            results = await push_image(c, f"{proxy.host}/chunked/busybox:v1", image, chunk_size=chunk)
            assert {r.status for r in results} == {"uploaded"}
            big = image.big
            # PATCHes of one upload session follow each other's Location (same session id).
            session_of_big = None
            for put in proxy.requests("PUT", "/blobs/uploads/"):
                if put.query.get("digest") == [big.digest]:
                    session_of_big = put.path
                    assert put.body == b""
            assert session_of_big is not None
            patches = [p for p in proxy.requests("PATCH") if p.path == session_of_big]
            assert len(patches) == math.ceil(big.size / chunk)
            ranges = [p.headers["Content-Range"] for p in patches]
            expected = [f"{s}-{min(s + chunk, big.size) - 1}" for s in range(0, big.size, chunk)]
            assert ranges == expected
            assert b"".join(p.body for p in patches) == image.blobs[big.digest]

        async with client() as c:
            fetcher = c.fetcher(f"{registry.host}/chunked/busybox:v1")
            assert await fetcher.read(big) == image.blobs[big.digest]

    asyncio.run(run())


def test_cross_repository_mount(registry: Registry, image: Image) -> None:
    async def run() -> None:
        async with client() as c:
            await push_image(c, f"{registry.host}/src/app:v1", image)
        async with FaultProxy(registry.host) as proxy, client() as c:
            results = await push_image(c, f"{proxy.host}/dst/app:v1", image, mount_from=("src/app",))
            assert [r.status for r in results[:-1]] == ["mounted"] * len(image.blob_descs())
            assert results[0].mounted_from == f"{proxy.host}/src/app"
            posts = proxy.requests("POST", "/dst/app/blobs/uploads/")
            assert all(p.query["from"] == ["src/app"] and p.answered == 201 for p in posts)
            assert not proxy.requests("PUT", "/blobs/uploads/") and not proxy.requests("PATCH")

            # The distribution-source annotation names the candidates just as well.
            key = "containerd.io/distribution.source.127.0.0.1"
            pusher = c.pusher(f"{proxy.host}/dst2/app:v1")
            annotated = Descriptor(image.big.media_type, image.big.digest, image.big.size, {key: "other/x,src/app"})
            result = await pusher.push_blob(annotated, image.blobs[image.big.digest])
            assert result.status == "mounted"

            # A repository without the blob: the registry opens an upload session, which is used.
            proxy.seen.clear()
            pusher = c.pusher(f"{proxy.host}/dst3/app:v1")
            result = await pusher.push_blob(image.config, image.blobs[image.config.digest], mount_from=("nope/x",))
            assert result.status == "uploaded"
            posts = proxy.requests("POST")
            assert len(posts) == 1 and posts[0].answered == 202
            assert len(proxy.requests("PUT", "/blobs/uploads/")) == 1

    asyncio.run(run())


def test_not_found(registry: Registry, image: Image) -> None:
    async def run() -> None:
        async with client() as c:
            with pytest.raises(NotFound):
                await c.resolve(f"{registry.host}/missing/repo:v1")
            with pytest.raises(NotFound):
                await c.resolve(f"{registry.host}/missing/repo@{image.manifest.digest}")
            with pytest.raises(NotFound):
                await c.fetcher(f"{registry.host}/missing/repo:v1").read(image.config)

    asyncio.run(run())


# -- resume and retries --------------------------------------------------------------------------


def _store(tmp_path: Path) -> ContentStore:
    return ContentStore(DB(tmp_path / "meta.db"), LocalStore(tmp_path / "content"))


def test_fetch_resumes_after_dropped_connection(registry: Registry, image: Image, tmp_path: Path) -> None:
    big = image.big
    cut_at = 100_000

    async def run() -> None:
        async with client() as c:
            await push_image(c, f"{registry.host}/resume/app:v1", image)
        async with FaultProxy(registry.host) as proxy, client() as c:
            proxy.cuts.append(Cut(lambda s: s.method == "GET" and big.digest in s.path, cut_at))
            store = _store(tmp_path)
            writer = store.writer(CTX, "layer-ref", total=big.size, expected=big.digest)
            fetcher = c.fetcher(f"{proxy.host}/resume/app:v1")
            progress: list[int] = []
            digest = await fetcher.fetch_into(writer, big, progress=lambda _d, done, _t: progress.append(done))
            writer.close()
            assert digest == big.digest
            assert store.read_at(CTX, big.digest, 0, big.size) == image.blobs[big.digest]
            gets = blob_gets(proxy, big)
            assert len(gets) == 2
            assert "Range" not in gets[0].headers
            assert gets[1].headers["Range"] == f"bytes={cut_at}-"
            # Progress never went back to zero: the second request continued the first.
            assert progress == sorted(progress) and progress[-1] == big.size

            # The streaming API resumes the same way and still checks the digest.
            proxy.seen.clear()
            proxy.cuts.append(Cut(lambda s: s.method == "GET" and big.digest in s.path, 3 * cut_at))
            data = b"".join([chunk async for chunk in fetcher.fetch(big)])
            assert data == image.blobs[big.digest]
            assert [g.headers.get("Range") for g in blob_gets(proxy, big)] == [None, f"bytes={3 * cut_at}-"]

    asyncio.run(run())


def test_fetch_into_continues_an_interrupted_ingest(registry: Registry, image: Image, tmp_path: Path) -> None:
    big = image.big
    blob = image.blobs[big.digest]
    prefix = 50_000

    async def run() -> None:
        async with client() as c:
            await push_image(c, f"{registry.host}/ingest/app:v1", image)
        store = _store(tmp_path)
        # An earlier pull stopped after `prefix` bytes.
        first = store.writer(CTX, "interrupted", total=big.size, expected=big.digest)
        first.write(blob[:prefix])
        first.close()
        async with FaultProxy(registry.host) as proxy, client() as c:
            fetcher = c.fetcher(f"{proxy.host}/ingest/app:v1")
            writer = store.writer(CTX, "interrupted", total=big.size, expected=big.digest)
            assert writer.offset == prefix
            assert await fetcher.fetch_into(writer, big) == big.digest
            writer.close()
            gets = blob_gets(proxy, big)
            assert [g.headers.get("Range") for g in gets] == [f"bytes={prefix}-"]
            assert store.read_at(CTX, big.digest, 0, big.size) == blob

            # A prefix that does not belong to the blob is detected and fetched again from zero.
            layer = image.layers[0] if image.layers[0] != big else image.layers[1]
            bad = store.writer(CTX, "corrupt", total=layer.size, expected=layer.digest)
            bad.write(b"\0" * 100)
            bad.close()
            proxy.seen.clear()
            writer = store.writer(CTX, "corrupt", total=layer.size, expected=layer.digest)
            assert await fetcher.fetch_into(writer, layer) == layer.digest
            writer.close()
            assert [g.headers.get("Range") for g in blob_gets(proxy, layer)] == ["bytes=100-", None]
            assert store.read_at(CTX, layer.digest, 0, layer.size) == image.blobs[layer.digest]

    asyncio.run(run())


def test_retries_on_503_and_429(registry: Registry, image: Image) -> None:
    def busy() -> web.Response:
        return web.Response(status=503, text="busy")

    def slow_down() -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "0"})

    async def run() -> None:
        async with client() as c:
            await push_image(c, f"{registry.host}/retry/app:v1", image)
        async with FaultProxy(registry.host) as proxy, client() as c:
            proxy.hooks += [
                answer_n_times(lambda s: s.method == "HEAD" and "/manifests/" in s.path, 2, busy),
                answer_n_times(lambda s: s.method == "GET" and image.config.digest in s.path, 2, busy),
                answer_n_times(lambda s: s.method == "GET" and image.big.digest in s.path, 1, slow_down),
            ]
            ref = f"{proxy.host}/retry/app:v1"
            _, desc = await c.resolve(ref)
            assert desc.digest == image.manifest.digest
            assert [s.answered for s in proxy.requests("HEAD", "/manifests/")] == [503, 503, 200]
            fetcher = c.fetcher(ref)
            assert await fetcher.read(image.config) == image.blobs[image.config.digest]
            assert [s.answered for s in blob_gets(proxy, image.config)] == [503, 503, 200]
            assert await fetcher.read(image.big) == image.blobs[image.big.digest]
            assert [s.answered for s in blob_gets(proxy, image.big)] == [429, 200]

            # A registry that stays down: the attempts run out, then Unavailable.
            proxy.hooks.append(answer_n_times(lambda s: "/manifests/" in s.path, 100, busy))
            proxy.seen.clear()
            with pytest.raises(Unavailable):
                await c.resolve(ref)
            assert len(proxy.requests("HEAD")) == 4

    asyncio.run(run())


# -- authentication ------------------------------------------------------------------------------


def _docker_config(path: Path, host: str, user: str, password: str) -> Path:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {f"http://{host}/v1/": {"auth": auth}}}))
    return path


@pytest.mark.parametrize("where", ["htpasswd", "proxy"])
def test_basic_auth(image: Image, tmp_path: Path, where: str) -> None:
    """docker-registry's own htpasswd auth, and Basic auth enforced by the proxy."""
    users = {"alice": "s3cret"}

    async def exercise(host: str) -> None:
        ref = f"{host}/private/app:v1"
        async with client() as c:
            with pytest.raises(PermissionDenied):
                await push_image(c, ref, image)
        wrong = _docker_config(tmp_path / "wrong.json", host, "alice", "nope")
        async with client(credentials=docker_config_credentials(wrong)) as c:
            with pytest.raises(PermissionDenied):
                await c.resolve(ref)
        good = _docker_config(tmp_path / "config.json", host, "alice", "s3cret")
        async with client(credentials=docker_config_credentials(good)) as c:
            await push_image(c, ref, image)
            _, desc = await c.resolve(ref)
            assert await c.fetcher(ref).read(image.big) == image.blobs[image.big.digest]
            assert desc.digest == image.manifest.digest

    if where == "htpasswd":
        if bcrypt_hash("probe") is None:
            pytest.skip("libc crypt(3) cannot make bcrypt hashes for htpasswd")
        with running_registry(users=users) as reg:
            asyncio.run(exercise(reg.host))
        return

    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()

    async def guard(request: web.Request, seen: Seen) -> web.StreamResponse | None:
        if seen.headers.get("Authorization") == expected:
            return None
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="test-realm"'})

    async def run(reg: Registry) -> None:
        async with FaultProxy(reg.host, hooks=[guard], strip_authorization=True) as proxy:
            await exercise(proxy.host)

    with running_registry() as reg:
        asyncio.run(run(reg))


@dataclass
class TokenServer:
    """A token endpoint and a guard in the proxy: the registry as Docker Hub would front it."""

    proxy_host: str = ""
    issued: dict[str, str] = field(default_factory=dict)
    token_requests: list[Seen] = field(default_factory=list)
    rejected: list[Seen] = field(default_factory=list)

    async def hook(self, request: web.Request, seen: Seen) -> web.StreamResponse | None:
        if seen.path == "/token":
            self.token_requests.append(seen)
            token = f"tok-{len(self.token_requests)}"
            if seen.method == "POST":
                form = parse_qs(seen.body.decode())
                self.issued[token] = form.get("scope", [""])[0]
                return web.json_response({"access_token": token, "expires_in": 300})
            self.issued[token] = " ".join(seen.query.get("scope", []))
            return web.json_response({"token": token, "expires_in": 300})
        auth = seen.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and auth[len("Bearer ") :] in self.issued:
            return None
        self.rejected.append(seen)
        repo = seen.path.removeprefix("/v2/").split("/blobs/")[0].split("/manifests/")[0]
        challenge = (
            f'Bearer realm="http://{self.proxy_host}/token",service="test-registry",scope="repository:{repo}:pull"'
        )
        return web.json_response(
            {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
            status=401,
            headers={"WWW-Authenticate": challenge},
        )


def test_bearer_token_flow(registry: Registry, image: Image) -> None:
    async def run() -> None:
        tokens = TokenServer()
        async with FaultProxy(registry.host, hooks=[tokens.hook], strip_authorization=True) as proxy:
            tokens.proxy_host = proxy.host
            ref = f"{proxy.host}/bearer/app:v1"
            creds = static_credentials({proxy.host: Credentials("bob", "hunter2")})
            async with client(credentials=creds) as c:
                await push_image(c, ref, image)
                # One challenge, then every request carried a token fetched for the push scope.
                assert len(tokens.rejected) == 1
                first = tokens.token_requests[0]
                assert first.method == "GET"
                assert first.query["service"] == ["test-registry"]
                assert sorted(first.query["scope"]) == ["repository:bearer/app:pull", "repository:bearer/app:pull,push"]
                assert first.headers["Authorization"] == "Basic " + base64.b64encode(b"bob:hunter2").decode()
                assert len(tokens.token_requests) == 1  # cached for the whole push
                v2 = [s for s in proxy.seen if s.path.startswith("/v2/") and s not in tokens.rejected]
                assert v2 and all(s.headers["Authorization"] == "Bearer tok-1" for s in v2)

                # Pulling needs another scope: a second token, then cached again.
                _, desc = await c.resolve(ref)
                assert await c.fetcher(ref).read(image.big) == image.blobs[image.big.digest]
                assert desc.digest == image.manifest.digest
                assert len(tokens.token_requests) == 2
                assert tokens.token_requests[1].query["scope"] == ["repository:bearer/app:pull"]
                assert len(tokens.rejected) == 1

            # An identity token goes to the OAuth2 endpoint as a refresh token.
            identity = static_credentials({proxy.host: Credentials(identity_token="refresh-me")})
            async with client(credentials=identity) as c:
                assert (await c.resolve(ref))[1].digest == image.manifest.digest
            post = tokens.token_requests[-1]
            assert post.method == "POST"
            form = parse_qs(post.body.decode())
            assert form["grant_type"] == ["refresh_token"]
            assert form["refresh_token"] == ["refresh-me"]
            assert form["service"] == ["test-registry"]
            assert form["scope"] == ["repository:bearer/app:pull"]

            # Anonymous: the token request carries no credentials.
            async with client() as c:
                assert (await c.resolve(ref))[1].digest == image.manifest.digest
            assert "Authorization" not in tokens.token_requests[-1].headers

    asyncio.run(run())


# -- hosts.toml ----------------------------------------------------------------------------------


def test_hosts_toml_mirror_and_server(registry: Registry, image: Image, tmp_path: Path) -> None:
    """A pull-only mirror is used for blobs (with ?ns=), never to resolve a tag; pushes go to the server."""
    domain = "registry.invalid:5000"

    async def run() -> None:
        async with FaultProxy(registry.host) as mirror, FaultProxy(registry.host) as upstream:
            hosts_dir = tmp_path / "certs.d" / "registry.invalid_5000_"
            hosts_dir.mkdir(parents=True)
            (hosts_dir / "hosts.toml").write_text(
                f'server = "http://{upstream.host}"\n'
                f'[host."http://{mirror.host}"]\n'
                '  capabilities = ["pull"]\n'
                f'  [host."http://{mirror.host}".header]\n'
                '    x-mirror = "yes"\n'
            )
            ref = f"{domain}/mirrored/app:v1"
            async with client(config_path=tmp_path / "certs.d", limits=Limits(1, 1)) as c:
                assert [h.host for h in c.hosts(domain)] == [mirror.host, upstream.host]
                await push_image(c, ref, image)
                assert not mirror.seen
                assert upstream.requests("PUT", "/manifests/v1")

                _, desc = await c.resolve(ref)
                assert desc.digest == image.manifest.digest
                assert not mirror.seen  # no resolve capability
                assert await c.fetcher(ref).read(image.big) == image.blobs[image.big.digest]
                got = blob_gets(mirror, image.big)
                assert len(got) == 1
                assert got[0].query["ns"] == [domain]
                assert got[0].headers["x-mirror"] == "yes"
                assert not blob_gets(upstream, image.big)

                # By digest, the mirror may serve the manifest too.
                _, pinned = await c.resolve(f"{domain}/mirrored/app@{image.manifest.digest}")
                assert pinned.digest == image.manifest.digest
                assert mirror.requests("HEAD", f"/manifests/{image.manifest.digest}")

    asyncio.run(run())


def test_chunked_push_resumes_from_the_session_state(registry: Registry, image: Image) -> None:
    """A chunk that keeps failing: the client asks the session where it stands and goes on from there."""
    chunk = 256 * 1024
    big = image.big

    def busy() -> web.Response:
        return web.Response(status=503)

    async def run() -> None:
        async with FaultProxy(registry.host) as proxy, client() as c:
            second_chunk = answer_n_times(
                lambda s: s.method == "PATCH" and s.headers.get("Content-Range", "").startswith(f"{chunk}-"), 4, busy
            )
            proxy.hooks.append(second_chunk)
            result = await c.pusher(f"{proxy.host}/chunk-resume/app:v1").push_blob(
                big, image.blobs[big.digest], chunk_size=chunk
            )
            assert result.status == "uploaded"
            status_checks = proxy.requests("GET", "/blobs/uploads/")
            assert len(status_checks) == 1 and status_checks[0].answered == 204
            ranges = [p.headers["Content-Range"] for p in proxy.requests("PATCH") if p.answered == 202]
            assert ranges == [f"{s}-{min(s + chunk, big.size) - 1}" for s in range(0, big.size, chunk)]
        async with client() as c:
            assert await c.fetcher(f"{registry.host}/chunk-resume/app:v1").read(big) == image.blobs[big.digest]

    asyncio.run(run())


def test_redirects_do_not_carry_credentials(registry: Registry, image: Image) -> None:
    """A blob served from elsewhere (a CDN): followed, and the registry's token stays home."""

    async def run() -> None:
        async with client() as c:
            await push_image(c, f"{registry.host}/redirect/app:v1", image)
        tokens = TokenServer()
        async with (
            FaultProxy(registry.host) as cdn,
            FaultProxy(registry.host, hooks=[tokens.hook], strip_authorization=True) as proxy,
        ):
            tokens.proxy_host = proxy.host

            async def to_cdn(request: web.Request, seen: Seen) -> web.StreamResponse | None:
                if seen.method == "GET" and "/blobs/" in seen.path and seen.headers.get("Authorization"):
                    return web.Response(status=307, headers={"Location": f"http://{cdn.host}{request.path_qs}"})
                return None

            proxy.hooks.append(to_cdn)
            creds = static_credentials({proxy.host: Credentials("bob", "hunter2")})
            async with client(credentials=creds) as c:
                fetcher = c.fetcher(f"{proxy.host}/redirect/app:v1")
                assert await fetcher.read(image.big) == image.blobs[image.big.digest]
            (served,) = blob_gets(cdn, image.big)
            assert "Authorization" not in served.headers
            assert [s.answered for s in blob_gets(proxy, image.big)] == [401, 307]

    asyncio.run(run())
