"""Registry credentials: a callback per host, and docker's ``config.json``.

A credentials function takes the host being contacted (``registry-1.docker.io``,
``127.0.0.1:5000``) and returns :class:`Credentials` or None, directly or as an awaitable (the
Transfer service asks its client over a stream).

``config.json`` is ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``. Its ``auths``
map keys are host names, possibly written as URLs (``https://index.docker.io/v1/`` is Docker Hub);
each entry has ``auth`` (base64 of ``user:password``), or ``username`` and ``password``, and maybe
``identitytoken`` (an OAuth2 refresh token, used instead of the password). ``credHelpers`` and
``credsStore`` name ``docker-credential-<helper>`` programs, run with ``get``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import json
import logging
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pycontainerd.errdefs import InvalidArgument, NotFound, Unavailable

log = logging.getLogger(__name__)

DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")
HELPER_TIMEOUT = 30.0
IDENTITY_TOKEN_USERNAME = "<token>"


@dataclass(frozen=True, slots=True)
class Credentials:
    """What to log in with.

    Attributes:
        username: user name ("" with an identity token alone).
        password: password or personal access token.
        identity_token: OAuth2 refresh token; when set, the bearer flow posts it instead of the password.
    """

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    @property
    def empty(self) -> bool:
        """Whether there is nothing to log in with."""
        return not (self.username or self.password or self.identity_token)


CredentialsFn = Callable[[str], Credentials | Awaitable[Credentials | None] | None]
"""Host -> credentials (or None), possibly asynchronously."""


async def call_credentials(fn: CredentialsFn | None, host: str) -> Credentials | None:
    """Ask ``fn`` for the credentials of ``host``, awaiting its answer if need be."""
    if fn is None:
        return None
    result = fn(host)
    if inspect.isawaitable(result):
        result = await result
    if result is not None and not isinstance(result, Credentials):
        raise InvalidArgument(f"credentials callback returned {type(result).__name__}, not Credentials")
    return result


def host_of(key: str) -> str:
    """The host in a ``config.json`` key: scheme and path removed (docker's ``ConvertToHostname``)."""
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            break
    return key.split("/", 1)[0]


def _same_registry(a: str, b: str) -> bool:
    return a == b or (a in DOCKER_HUB_HOSTS and b in DOCKER_HUB_HOSTS)


def docker_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where docker keeps ``config.json`` (``DOCKER_CONFIG`` names the directory)."""
    env = os.environ if environ is None else environ
    directory = env.get("DOCKER_CONFIG")
    if directory:
        return Path(directory) / "config.json"
    return Path(env.get("HOME") or Path.home()) / ".docker" / "config.json"


@dataclass(frozen=True, slots=True)
class DockerConfig:
    """The credential parts of a docker ``config.json``.

    Attributes:
        auths: key as written in the file -> credentials.
        cred_helpers: host -> helper suffix (``docker-credential-<suffix>``).
        creds_store: helper for every other host, "" for none.
    """

    auths: dict[str, Credentials] = field(default_factory=dict)
    cred_helpers: dict[str, str] = field(default_factory=dict)
    creds_store: str = ""

    def lookup(self, host: str) -> Credentials | None:
        """The ``auths`` entry for ``host``: an exact key first, then keys written as URLs."""
        if host in self.auths:
            return self.auths[host]
        for key, creds in self.auths.items():
            if _same_registry(host_of(key), host):
                return creds
        return None

    def helper_for(self, host: str) -> str:
        """The credential helper to ask for ``host``, "" for none."""
        for key, helper in self.cred_helpers.items():
            if _same_registry(host_of(key), host):
                return helper
        return self.creds_store

    async def credentials(self, host: str) -> Credentials | None:
        """Credentials for ``host``: a helper's answer when one is configured, else ``auths``."""
        helper = self.helper_for(host)
        if helper:
            server = "https://index.docker.io/v1/" if host in DOCKER_HUB_HOSTS else host
            try:
                found = await run_credential_helper(helper, server)
            except NotFound:
                found = None
            if found is not None:
                return found
        return self.lookup(host)


def _entry(key: str, raw: object) -> Credentials:
    if not isinstance(raw, dict):
        raise InvalidArgument(f"docker config: auths[{key!r}] is not an object")
    username = str(raw.get("username") or "")
    password = str(raw.get("password") or "")
    encoded = raw.get("auth") or ""
    if encoded:
        try:
            decoded = base64.b64decode(str(encoded), validate=False).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"docker config: auths[{key!r}].auth is not base64: {exc}") from exc
        user, sep, secret = decoded.partition(":")
        if not sep:
            raise InvalidArgument(f"docker config: auths[{key!r}].auth is not user:password")
        username, password = user, secret.strip("\x00")
    token = str(raw.get("identitytoken") or "")
    if token and username == IDENTITY_TOKEN_USERNAME:
        username = ""
    return Credentials(username, password, token)


def parse_docker_config(text: str) -> DockerConfig:
    """Parse the contents of a ``config.json``.

    Raises:
        InvalidArgument: not JSON, or an entry docker would not accept either.
    """
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"docker config is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidArgument("docker config is not a JSON object")
    auths = data.get("auths")
    auths = {} if auths is None else auths
    if not isinstance(auths, dict):
        raise InvalidArgument("docker config: 'auths' is not an object")
    helpers = data.get("credHelpers")
    helpers = {} if helpers is None else helpers
    if not isinstance(helpers, dict):
        raise InvalidArgument("docker config: 'credHelpers' is not an object")
    return DockerConfig(
        {key: _entry(key, raw) for key, raw in auths.items()},
        {str(k): str(v) for k, v in helpers.items()},
        str(data.get("credsStore") or ""),
    )


def load_docker_config(path: str | os.PathLike[str] | None = None) -> DockerConfig:
    """Read ``config.json`` (default: :func:`docker_config_path`); a missing file is an empty config."""
    target = Path(path) if path is not None else docker_config_path()
    try:
        text = target.read_text()
    except FileNotFoundError:
        return DockerConfig()
    return parse_docker_config(text)


async def run_credential_helper(helper: str, server: str) -> Credentials | None:
    """Ask ``docker-credential-<helper> get`` for ``server``'s credentials.

    Raises:
        NotFound: the helper program is not installed.
        Unavailable: it failed, timed out or answered something that is not its JSON.
    """
    program = shutil.which(f"docker-credential-{helper}")
    if program is None:
        raise NotFound(f"credential helper docker-credential-{helper} not found")
    proc = await asyncio.create_subprocess_exec(
        program,
        "get",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(server.encode()), HELPER_TIMEOUT)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise Unavailable(f"credential helper {helper} timed out") from exc
    if proc.returncode != 0:
        message = (out or err).decode(errors="replace").strip()
        if "credentials not found" in message.lower():
            return None
        raise Unavailable(f"credential helper {helper} failed: {message}")
    try:
        answer = json.loads(out)
        username, secret = str(answer.get("Username") or ""), str(answer.get("Secret") or "")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise Unavailable(f"credential helper {helper} answered no JSON object") from exc
    if username == IDENTITY_TOKEN_USERNAME:
        return Credentials(identity_token=secret)
    return Credentials(username, secret)


def docker_config_credentials(path: str | os.PathLike[str] | None = None) -> CredentialsFn:
    """A credentials function backed by ``config.json``, read again on each call (it may change)."""

    async def lookup(host: str) -> Credentials | None:
        return await load_docker_config(path).credentials(host)

    return lookup


def static_credentials(table: Mapping[str, Credentials]) -> CredentialsFn:
    """A credentials function over a fixed host -> credentials table."""
    frozen = dict(table)

    def lookup(host: str) -> Credentials | None:
        for key, creds in frozen.items():
            if _same_registry(host_of(key), host):
                return creds
        return None

    return lookup


def chain_credentials(*fns: CredentialsFn | None) -> CredentialsFn:
    """The first non-empty answer of several credentials functions."""

    async def lookup(host: str) -> Credentials | None:
        for fn in fns:
            found = await call_credentials(fn, host)
            if found is not None and not found.empty:
                return found
        return None

    return lookup
