"""WWW-Authenticate parsing and the authorizer's token flow, against a scripted token server."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from pycontainerd.errdefs import InvalidArgument, PermissionDenied, Unavailable
from pycontainerd.remotes.auth import (
    Authorizer,
    Challenge,
    basic_authorization,
    parse_token_response,
    parse_www_authenticate,
    repository_scope,
)
from pycontainerd.remotes.credentials import Credentials
from pycontainerd.remotes.hosts import RegistryHost

HOST = RegistryHost("https", "registry.example", headers={"X-Extra": ("1",)})
NETLOC = "registry.example"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            ['Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull"'],
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://auth.docker.io/token",
                        "service": "registry.docker.io",
                        "scope": "repository:a/b:pull",
                    },
                )
            ],
        ),
        (
            # Commas inside quotes belong to the value; spaces around separators are allowed.
            ['Bearer realm="https://a/t" , scope="repository:x:pull,push repository:y:pull", error="invalid_token"'],
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://a/t",
                        "scope": "repository:x:pull,push repository:y:pull",
                        "error": "invalid_token",
                    },
                )
            ],
        ),
        (['Basic realm="Registry Realm"'], [Challenge("basic", {"realm": "Registry Realm"})]),
        (["basic realm=unquoted"], [Challenge("basic", {"realm": "unquoted"})]),
        (['BEARER REALM="x"'], [Challenge("bearer", {"realm": "x"})]),
        (['Bearer realm="say \\"hi\\", ok"'], [Challenge("bearer", {"realm": 'say "hi", ok'})]),
        (["Bearer"], [Challenge("bearer", {})]),
        # Several challenges: in one header, or in several; the best scheme first.
        (
            ['Basic realm="b", Bearer realm="t",service="s"'],
            [Challenge("bearer", {"realm": "t", "service": "s"}), Challenge("basic", {"realm": "b"})],
        ),
        (
            ['Basic realm="b"', 'Digest realm="d", nonce="n"', 'Bearer realm="t"'],
            [
                Challenge("bearer", {"realm": "t"}),
                Challenge("digest", {"realm": "d", "nonce": "n"}),
                Challenge("basic", {"realm": "b"}),
            ],
        ),
        (["Negotiate abc", "NTLM", 'Basic realm="b"'], [Challenge("basic", {"realm": "b"})]),
        (["", "   ", ","], []),
    ],
)
def test_parse_www_authenticate(headers: list[str], expected: list[Challenge]) -> None:
    assert parse_www_authenticate(headers) == expected


def test_helpers() -> None:
    assert basic_authorization("u", "p:w") == "Basic " + base64.b64encode(b"u:p:w").decode()
    assert repository_scope("library/busybox") == "repository:library/busybox:pull"
    assert repository_scope("a/b", push=True) == "repository:a/b:pull,push"


@pytest.mark.parametrize(
    ("body", "value", "expires"),
    [
        ({"token": "t1", "expires_in": 300}, "t1", 1000 + 300 - 10),
        ({"access_token": "t2", "token": "ignored", "expires_in": 20}, "t2", 1000 + 20 - 2),
        ({"token": "t3"}, "t3", 1000 + 60 - 6),  # no lifetime given: 60 s
        ({"token": "t4", "expires_in": "junk"}, "t4", 1000 + 60 - 6),
    ],
)
def test_parse_token_response(body: dict[str, object], value: str, expires: float) -> None:
    token = parse_token_response(json.dumps(body).encode(), 1000.0)
    assert token.value == value
    assert token.expires_at == pytest.approx(expires)


@pytest.mark.parametrize("body", [b"not json", b"[]", b"{}", b'{"token": ""}'])
def test_parse_token_response_without_token(body: bytes) -> None:
    with pytest.raises(PermissionDenied):
        parse_token_response(body, 0.0)


# -- the authorizer ------------------------------------------------------------------------------


@dataclass
class Call:
    method: str
    url: str
    headers: dict[str, str]
    params: list[tuple[str, str]]
    form: dict[str, str] | None


@dataclass
class FakeTokenServer:
    """Answers token requests from a script: status per method, tokens numbered."""

    status: dict[str, int] = field(default_factory=lambda: {"GET": 200, "POST": 200})
    calls: list[Call] = field(default_factory=list)
    expires_in: int = 300
    delay: float = 0.0

    async def token_request(
        self,
        origin: RegistryHost,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Sequence[tuple[str, str]] = (),
        form: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        assert origin is HOST
        self.calls.append(Call(method, url, dict(headers), list(params), dict(form) if form is not None else None))
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.status[method]
        if status != 200:
            return status, b'{"errors":[{"code":"DENIED"}]}'
        key = "access_token" if method == "POST" else "token"
        return 200, json.dumps({key: f"tok-{len(self.calls)}", "expires_in": self.expires_in}).encode()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


BEARER = [Challenge("bearer", {"realm": "https://auth.example/token", "service": "reg", "scope": "repository:a:pull"})]


def make(server: FakeTokenServer, creds: Credentials | None, clock: Clock | None = None) -> Authorizer:
    return Authorizer(server, (lambda host: creds) if creds is not None else None, clock=clock or Clock())


def test_anonymous_bearer_flow() -> None:
    async def run() -> None:
        server = FakeTokenServer()
        auth = make(server, None)
        assert await auth.authorization(NETLOC, ["repository:a:pull"]) is None  # nothing known yet
        assert await auth.challenge(HOST, NETLOC, BEARER, rejected=False)
        assert await auth.authorization(NETLOC, ["repository:a:pull"]) == "Bearer tok-1"
        (call,) = server.calls
        assert (call.method, call.url) == ("GET", "https://auth.example/token")
        assert call.params == [("service", "reg"), ("scope", "repository:a:pull")]
        assert "Authorization" not in call.headers
        assert call.headers["X-Extra"] == "1"  # hosts.toml headers reach the token server too

    asyncio.run(run())


def test_token_per_scope_set_cached_until_expiry() -> None:
    async def run() -> None:
        server, clock = FakeTokenServer(expires_in=100), Clock()
        auth = make(server, Credentials("alice", "pw"), clock)
        await auth.challenge(HOST, NETLOC, BEARER, rejected=False)
        push = ["repository:a:pull,push"]
        assert await auth.authorization(NETLOC, push) == "Bearer tok-1"
        assert await auth.authorization(NETLOC, push) == "Bearer tok-1"
        # The challenge's scope joins the request's; the set is sorted and deduplicated.
        assert server.calls[0].params == [
            ("service", "reg"),
            ("scope", "repository:a:pull"),
            ("scope", "repository:a:pull,push"),
        ]
        assert server.calls[0].headers["Authorization"] == basic_authorization("alice", "pw")
        assert await auth.authorization(NETLOC, ["repository:b:pull"]) == "Bearer tok-2"
        assert await auth.authorization(NETLOC, push) == "Bearer tok-1"
        clock.now += 95  # within the renewal margin: fetched again
        assert await auth.authorization(NETLOC, push) == "Bearer tok-3"
        assert len(server.calls) == 3

    asyncio.run(run())


def test_concurrent_requests_share_one_token_fetch() -> None:
    async def run() -> None:
        server = FakeTokenServer(delay=0.01)
        auth = make(server, None)
        await auth.challenge(HOST, NETLOC, BEARER, rejected=False)
        tokens = await asyncio.gather(*(auth.authorization(NETLOC, ["repository:a:pull"]) for _ in range(5)))
        assert set(tokens) == {"Bearer tok-1"}
        assert len(server.calls) == 1

    asyncio.run(run())


def test_identity_token_uses_oauth_post() -> None:
    async def run() -> None:
        server = FakeTokenServer()
        auth = make(server, Credentials(identity_token="refresh"))
        await auth.challenge(HOST, NETLOC, BEARER, rejected=False)
        assert await auth.authorization(NETLOC, ["repository:a:pull,push"]) == "Bearer tok-1"
        (call,) = server.calls
        assert call.method == "POST"
        assert call.form == {
            "grant_type": "refresh_token",
            "refresh_token": "refresh",
            "service": "reg",
            "client_id": "pycontainerd-client",
            "scope": "repository:a:pull repository:a:pull,push",
        }
        assert call.headers["Content-Type"].startswith("application/x-www-form-urlencoded")

    asyncio.run(run())


@pytest.mark.parametrize("status", [400, 401, 404, 405])
def test_oauth_post_unsupported_falls_back_to_get(status: int) -> None:
    async def run() -> None:
        server = FakeTokenServer(status={"POST": status, "GET": 200})
        auth = make(server, Credentials("bob", "", identity_token="refresh"))
        await auth.challenge(HOST, NETLOC, BEARER, rejected=False)
        assert await auth.authorization(NETLOC, []) == "Bearer tok-2"
        assert [c.method for c in server.calls] == ["POST", "GET"]
        assert server.calls[1].headers["Authorization"] == basic_authorization("bob", "refresh")

    asyncio.run(run())


@pytest.mark.parametrize(("status", "kind"), [(401, PermissionDenied), (403, PermissionDenied), (503, Unavailable)])
def test_token_server_refusal(status: int, kind: type[Exception]) -> None:
    async def run() -> None:
        auth = make(FakeTokenServer(status={"GET": status, "POST": status}), Credentials("u", "p"))
        await auth.challenge(HOST, NETLOC, BEARER, rejected=False)
        with pytest.raises(kind):
            await auth.authorization(NETLOC, [])

    asyncio.run(run())


def test_rejected_token_builds_a_fresh_handler() -> None:
    async def run() -> None:
        server = FakeTokenServer()
        auth = make(server, None)
        await auth.challenge(HOST, NETLOC, BEARER, rejected=False)
        assert await auth.authorization(NETLOC, []) == "Bearer tok-1"
        # A new scope on the same registry: the handler stays, a token for the scope is fetched.
        assert await auth.challenge(HOST, NETLOC, BEARER, rejected=False)
        # The token itself was refused: forget cached tokens.
        assert await auth.challenge(HOST, NETLOC, BEARER, rejected=True)
        assert await auth.authorization(NETLOC, []) == "Bearer tok-2"
        error = [Challenge("bearer", {**BEARER[0].params, "error": "invalid_token"})]
        assert await auth.challenge(HOST, NETLOC, error, rejected=False)
        assert await auth.authorization(NETLOC, []) == "Bearer tok-3"

    asyncio.run(run())


def test_bearer_challenge_needs_a_usable_realm() -> None:
    async def run() -> None:
        auth = make(FakeTokenServer(), None)
        with pytest.raises(InvalidArgument):
            await auth.challenge(HOST, NETLOC, [Challenge("bearer", {})], rejected=False)
        with pytest.raises(InvalidArgument):
            await auth.challenge(HOST, NETLOC, [Challenge("bearer", {"realm": "file:///x"})], rejected=False)

    asyncio.run(run())


def test_basic_auth() -> None:
    async def run() -> None:
        basic = [Challenge("basic", {"realm": "r"})]
        auth = make(FakeTokenServer(), Credentials("alice", "pw"))
        assert await auth.challenge(HOST, NETLOC, basic, rejected=False)
        assert await auth.authorization(NETLOC, ["anything"]) == basic_authorization("alice", "pw")
        # The same credentials refused again: no point retrying.
        assert not await auth.challenge(HOST, NETLOC, basic, rejected=True)
        auth.forget(NETLOC)
        assert await auth.authorization(NETLOC, []) is None
        with pytest.raises(PermissionDenied):
            await make(FakeTokenServer(), None).challenge(HOST, NETLOC, basic, rejected=False)
        with pytest.raises(PermissionDenied):
            await make(FakeTokenServer(), Credentials("alice", "")).challenge(HOST, NETLOC, basic, rejected=False)

    asyncio.run(run())


def test_async_credentials_callback() -> None:
    async def run() -> None:
        asked: list[str] = []

        async def creds(host: str) -> Credentials | None:
            asked.append(host)
            return Credentials("alice", "pw")

        auth = Authorizer(FakeTokenServer(), creds)
        assert await auth.challenge(HOST, NETLOC, [Challenge("basic", {})], rejected=False)
        assert asked == [NETLOC]

    asyncio.run(run())


def test_unknown_schemes_are_not_answered() -> None:
    async def run() -> None:
        auth = make(FakeTokenServer(), Credentials("a", "b"))
        assert not await auth.challenge(HOST, NETLOC, [], rejected=False)

    asyncio.run(run())
