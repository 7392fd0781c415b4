"""A real registry (Debian's ``docker-registry``) on 127.0.0.1, and a fault-injecting proxy for it.

``running_registry()`` starts ``/usr/bin/docker-registry serve <config.yml>`` on a free port with its
storage in a temp dir, waits until ``/v2/`` answers, and always stops it. ``FaultProxy`` is an
aiohttp server in front of it (in the test's own event loop) that records every request and can
answer instead of the registry (503s, 401 challenges, a token endpoint) or cut a response after
N bytes of body.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from tests.support.daemon import private_dir

DOCKER_REGISTRY = Path("/usr/bin/docker-registry")
HOP_BY_HOP = frozenset(
    h.lower()
    for h in ("Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Proxy-Authorization", "TE", "Trailer")
)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bcrypt_hash(password: str) -> str | None:
    """A bcrypt hash docker-registry's htpasswd accepts, from libc's crypt(3); None if unavailable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt  # deprecated in 3.11, gone in 3.13: the test then uses a proxy instead
        except ImportError:
            return None
    try:
        # rounds=16 is bcrypt cost 4: the registry checks the hash on every request.
        value = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    except (OSError, ValueError):
        return None
    return value if value and value.startswith("$2") else None


@dataclass
class Registry:
    """A running docker-registry."""

    host: str
    root: Path
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def _config(port: int, storage: Path, htpasswd: Path | None, tls: tuple[Path, Path] | None = None) -> str:
    auth = ""
    if htpasswd is not None:
        auth = f"auth:\n  htpasswd:\n    realm: test-realm\n    path: {htpasswd}\n"
    if tls is not None:
        auth = f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" + auth
    return (
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {storage}\n"
        "  delete:\n    enabled: true\n"
        "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"{auth}"
    )


@contextlib.contextmanager
def running_registry(
    *, users: dict[str, str] | None = None, tls: tuple[Path, Path] | None = None
) -> Iterator[Registry]:
    """Start docker-registry (with htpasswd auth for ``users``, over TLS with ``tls`` =
    (certificate, key)), yield it, always stop it.

    Raises:
        RuntimeError: docker-registry is missing, or bcrypt hashes cannot be made for ``users``.
    """
    if not DOCKER_REGISTRY.exists():
        raise RuntimeError("docker-registry is not installed: apt-get install docker-registry")
    with private_dir("reg-") as base:
        htpasswd = None
        if users:
            lines = []
            for user, password in users.items():
                hashed = bcrypt_hash(password)
                if hashed is None:
                    raise RuntimeError("no bcrypt hashing available for htpasswd")
                lines.append(f"{user}:{hashed}\n")
            htpasswd = base / "htpasswd"
            htpasswd.write_text("".join(lines))
        port = free_port()
        config = base / "config.yml"
        config.write_text(_config(port, base / "storage", htpasswd, tls))
        log = base / "registry.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([str(DOCKER_REGISTRY), "serve", str(config)], stdout=out, stderr=out)
        registry = Registry(f"127.0.0.1:{port}", base / "storage", log, proc)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if tls is not None:
                        with socket.create_connection(("127.0.0.1", port), timeout=2):
                            break
                    with urllib.request.urlopen(f"{registry.url}/v2/", timeout=2):
                        break
                except urllib.error.HTTPError as exc:
                    if exc.code == 401:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"docker-registry did not start:\n{registry.logs()}")
                time.sleep(0.05)
            yield registry
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- the proxy -----------------------------------------------------------------------------------


@dataclass
class Seen:
    """One request the proxy received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    answered: int = 0


Hook = Callable[[web.Request, Seen], Awaitable[web.StreamResponse | None]]
"""Looks at a request; returns a response to send instead of forwarding, or None."""


@dataclass
class Cut:
    """Cut the response of the first request matching ``match`` after ``after`` body bytes."""

    match: Callable[[Seen], bool]
    after: int
    remaining: int = 1


@dataclass
class FaultProxy:
    """An HTTP proxy in front of ``upstream`` (``host:port``), run in the current event loop."""

    upstream: str
    hooks: list[Hook] = field(default_factory=list)
    cuts: list[Cut] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    strip_authorization: bool = False
    host: str = ""
    _runner: web.AppRunner | None = None
    _session: ClientSession | None = None

    async def __aenter__(self) -> FaultProxy:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.host = f"127.0.0.1:{port}"
        self._session = ClientSession(
            auto_decompress=False, connector=TCPConnector(force_close=True), timeout=ClientTimeout(total=60)
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def requests(self, method: str | None = None, contains: str = "") -> list[Seen]:
        """Recorded requests, filtered by method and a path substring."""
        return [s for s in self.seen if (method is None or s.method == method) and contains in s.path]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        query: dict[str, list[str]] = {}
        for key, value in request.query.items():
            query.setdefault(key, []).append(value)
        seen = Seen(request.method, request.path, query, dict(request.headers), body)
        self.seen.append(seen)
        for hook in self.hooks:
            answer = await hook(request, seen)
            if answer is not None:
                seen.answered = answer.status
                return answer
        return await self._forward(request, seen)

    async def _forward(self, request: web.Request, seen: Seen) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers.pop("Content-Length", None)
        if self.strip_authorization:
            headers.pop("Authorization", None)
        # The registry builds Location URLs from Host: keep the proxy's, so uploads come back here.
        headers["Host"] = request.host
        async with self._session.request(
            request.method,
            f"http://{self.upstream}{request.path_qs}",
            headers=headers,
            data=seen.body if seen.body or request.method in ("PUT", "POST", "PATCH") else None,
            allow_redirects=False,
        ) as upstream:
            seen.answered = upstream.status
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            resp = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=out_headers)
            await resp.prepare(request)
            cut = next((c for c in self.cuts if c.remaining > 0 and c.match(seen)), None)
            if cut is not None:
                cut.remaining -= 1
            sent = 0
            async for chunk in upstream.content.iter_chunked(64 * 1024):
                if cut is not None and sent + len(chunk) >= cut.after:
                    await resp.write(chunk[: cut.after - sent])
                    # close() flushes what was written, then ends the connection mid-body.
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                await resp.write(chunk)
                sent += len(chunk)
            await resp.write_eof()
            return resp


def answer_n_times(match: Callable[[Seen], bool], times: int, make: Callable[[], web.StreamResponse]) -> Hook:
    """A hook answering ``make()`` to the first ``times`` requests that ``match``."""
    left = [times]

    async def hook(request: web.Request, seen: Seen) -> web.StreamResponse | None:
        if left[0] > 0 and match(seen):
            left[0] -= 1
            return make()
        return None

    return hook
