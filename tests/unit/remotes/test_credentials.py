"""Credentials from docker's config.json, credential helpers, and callbacks."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path

import pytest

from pycontainerd.errdefs import InvalidArgument, Unavailable
from pycontainerd.remotes.credentials import (
    Credentials,
    call_credentials,
    chain_credentials,
    docker_config_credentials,
    docker_config_path,
    host_of,
    load_docker_config,
    parse_docker_config,
    static_credentials,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CONFIG = {
    "auths": {
        "https://index.docker.io/v1/": {"auth": b64("hubuser:hubpass")},
        "registry.example.com": {"username": "plain", "password": "text"},
        "http://localhost:5000": {"auth": b64("local:pw:with:colons")},
        "ghcr.io": {"auth": b64("<token>:"), "identitytoken": "refresh-token"},
        "quay.io": {"auth": b64("bot:secret"), "username": "overridden", "password": "overridden"},
        "gcr.io": {},
    }
}


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("docker.io", Credentials("hubuser", "hubpass")),
        ("registry-1.docker.io", Credentials("hubuser", "hubpass")),
        ("index.docker.io", Credentials("hubuser", "hubpass")),
        ("registry.example.com", Credentials("plain", "text")),
        ("localhost:5000", Credentials("local", "pw:with:colons")),
        ("ghcr.io", Credentials("", "", "refresh-token")),
        ("quay.io", Credentials("bot", "secret")),
        ("gcr.io", Credentials()),
        ("other.io", None),
        ("localhost", None),
    ],
)
def test_lookup(host: str, expected: Credentials | None) -> None:
    assert parse_docker_config(json.dumps(CONFIG)).lookup(host) == expected


@pytest.mark.parametrize(
    ("key", "host"),
    [
        ("https://index.docker.io/v1/", "index.docker.io"),
        ("http://localhost:5000/v2/x", "localhost:5000"),
        ("registry.example.com", "registry.example.com"),
        ("registry.example.com/path", "registry.example.com"),
    ],
)
def test_host_of(key: str, host: str) -> None:
    assert host_of(key) == host


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"auths": []}',
        '{"auths": {"x": "string"}}',
        '{"auths": {"x": {"auth": "bm9jb2xvbg=="}}}',  # "nocolon"
        '{"credHelpers": []}',
    ],
)
def test_invalid_configs(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_docker_config(text)


def test_config_path(tmp_path: Path) -> None:
    assert docker_config_path({"DOCKER_CONFIG": "/etc/dock"}) == Path("/etc/dock/config.json")
    assert docker_config_path({"HOME": "/home/u"}) == Path("/home/u/.docker/config.json")


def test_load_from_docker_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert load_docker_config().auths == {}  # no file: empty
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    assert load_docker_config().lookup("docker.io") == Credentials("hubuser", "hubpass")

    async def run() -> None:
        fn = docker_config_credentials()
        assert await call_credentials(fn, "registry.example.com") == Credentials("plain", "text")
        # Read again at each call: a `docker login` in between is seen.
        (tmp_path / "config.json").write_text(json.dumps({"auths": {"registry.example.com": {"auth": b64("n:m")}}}))
        assert await call_credentials(fn, "registry.example.com") == Credentials("n", "m")

    asyncio.run(run())


def _helper(directory: Path, name: str, script: str) -> None:
    path = directory / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_credential_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _helper(
        bindir,
        "store",
        'read server; echo "{\\"ServerURL\\":\\"$server\\",\\"Username\\":\\"u-$server\\",\\"Secret\\":\\"s\\"}"\n',
    )
    _helper(bindir, "tok", 'read server; echo \'{"Username":"<token>","Secret":"refresh"}\'\n')
    _helper(bindir, "none", "echo 'credentials not found in native keychain'; exit 1\n")
    _helper(bindir, "broken", "echo boom >&2; exit 3\n")
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    config = {
        "credsStore": "store",
        "credHelpers": {"ghcr.io": "tok", "quay.io": "none", "bad.io": "broken", "gone.io": "missing"},
        "auths": {"quay.io": {"auth": b64("fallback:pw")}, "gone.io": {"auth": b64("g:pw")}},
    }
    cfg = parse_docker_config(json.dumps(config))

    async def run() -> None:
        assert await cfg.credentials("docker.io") == Credentials("u-https://index.docker.io/v1/", "s")
        assert await cfg.credentials("r.example:5000") == Credentials("u-r.example:5000", "s")
        assert await cfg.credentials("ghcr.io") == Credentials(identity_token="refresh")
        assert await cfg.credentials("quay.io") == Credentials("fallback", "pw")
        assert await cfg.credentials("gone.io") == Credentials("g", "pw")
        with pytest.raises(Unavailable):
            await cfg.credentials("bad.io")

    asyncio.run(run())


def test_static_and_chained() -> None:
    async def run() -> None:
        first = static_credentials({"https://index.docker.io/v1/": Credentials("hub", "pw")})
        assert await call_credentials(first, "registry-1.docker.io") == Credentials("hub", "pw")
        assert await call_credentials(first, "ghcr.io") is None

        async def second(host: str) -> Credentials | None:
            return Credentials("any", "thing")

        chained = chain_credentials(None, lambda host: Credentials(), first, second)
        assert await call_credentials(chained, "docker.io") == Credentials("hub", "pw")
        assert await call_credentials(chained, "ghcr.io") == Credentials("any", "thing")
        assert await call_credentials(None, "x") is None
        with pytest.raises(InvalidArgument):
            await call_credentials(lambda host: "user:pw", "x")  # type: ignore[arg-type,return-value]

    asyncio.run(run())


def test_credentials_repr_hides_secrets() -> None:
    text = repr(Credentials("alice", "pw-secret", "tok-secret"))
    assert "alice" in text and "secret" not in text
