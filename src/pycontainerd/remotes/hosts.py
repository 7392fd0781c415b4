"""Registry hosts: which endpoints serve a registry name, read from containerd's ``hosts.toml`` layout.

Under a ``config_path`` (containerd's ``config_path``, ``ctr --hosts-dir``), the directory for a
registry ``host[:port]`` is the first that exists of ``<host>_<port>_``, ``<host>:<port>`` and
``_default``. In it, ``hosts.toml`` lists mirrors as ``[host."<url>"]`` tables (tried in file order)
and the upstream as ``server`` (tried last); without ``hosts.toml``, Docker's certificate files
(``*.crt`` CAs, ``*.cert`` + ``*.key`` client pairs) configure TLS for the default endpoint.

With no directory at all the registry is its own single endpoint: ``https://<host>/v2``, except
``docker.io`` (served by ``registry-1.docker.io``) and loopback hosts. A loopback host on port 80
is plain ``http``; on 443 or no port, ``https`` without certificate checks; on any other port,
``https`` without certificate checks that drops to ``http`` when the server answers in plain HTTP.

Relative paths (``ca``, ``client``) are relative to the ``hosts.toml`` directory.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import os
import posixpath
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pycontainerd.errdefs import InvalidArgument
from pycontainerd.gc.durations import parse_duration as go_duration

log = logging.getLogger(__name__)

DEFAULT_DIR = "_default"
HOSTS_FILE = "hosts.toml"


class Capability(enum.IntFlag):
    """What a host may be trusted to do (containerd's ``HostCapabilities``)."""

    PULL = 1
    RESOLVE = 2
    PUSH = 4
    REFERRERS = 8

    @classmethod
    def all(cls) -> Capability:
        """Every capability: the upstream registry itself."""
        return cls.PULL | cls.RESOLVE | cls.PUSH | cls.REFERRERS


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """TLS options of one endpoint.

    Attributes:
        ca_files: extra CA certificates (PEM files), added to the system ones.
        client_pairs: ``(cert, key)`` file pairs; ``key`` "" when the cert file holds the key.
        skip_verify: None when unset, else whether certificate checks are skipped.
    """

    ca_files: tuple[str, ...] = ()
    client_pairs: tuple[tuple[str, str], ...] = ()
    skip_verify: bool | None = None

    @property
    def explicit(self) -> bool:
        """Whether anything was configured (containerd then prefers https over a plain http URL)."""
        return bool(self.ca_files or self.client_pairs) or self.skip_verify is not None


@dataclass(frozen=True, slots=True)
class RegistryHost:
    """One endpoint to try for a registry name.

    Attributes:
        scheme: ``https`` or ``http``.
        host: ``host[:port]`` to connect to.
        path: API root, ``/v2`` unless ``override_path`` said otherwise.
        capabilities: what this endpoint may be used for.
        tls: certificate settings.
        headers: extra request headers (name -> values).
        http_fallback: on ``https``, retry in plain ``http`` when the server does not speak TLS.
        dial_timeout: seconds to wait for a connection, None for the client's default.
    """

    scheme: str
    host: str
    path: str = "/v2"
    capabilities: Capability = field(default_factory=Capability.all)
    tls: TLSSettings = field(default_factory=TLSSettings)
    headers: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    http_fallback: bool = False
    dial_timeout: float | None = None

    def can(self, capability: Capability) -> bool:
        """Whether every bit of ``capability`` is granted."""
        return capability & self.capabilities == capability

    @property
    def base_url(self) -> str:
        """``scheme://host/path``, without a trailing slash."""
        return f"{self.scheme}://{self.host}{self.path}".rstrip("/")

    def is_mirror_for(self, registry: str) -> bool:
        """Whether this endpoint serves ``registry`` as a mirror (requests then carry ``?ns=``)."""
        if registry == self.host:
            return False
        return not (registry == "docker.io" and self.host == "registry-1.docker.io")


@dataclass(slots=True)
class _HostEntry:
    """A host as parsed, before defaults are filled in (host "" means: the registry itself)."""

    scheme: str = ""
    host: str = ""
    path: str = ""
    capabilities: Capability = field(default_factory=Capability.all)
    tls: TLSSettings = field(default_factory=TLSSettings)
    headers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dial_timeout: float | None = None


# -- finding the directory -------------------------------------------------------------------


def host_directory_names(host: str) -> list[str]:
    """Directory names to look for, in order, for ``host[:port]``."""
    names = []
    idx = host.rfind(":")
    if idx > 0:
        names.append(f"{host[:idx]}_{host[idx + 1 :]}_")
    names += [host, DEFAULT_DIR]
    return names


def find_host_dir(config_path: str | os.PathLike[str], host: str) -> Path | None:
    """The configuration directory of ``host`` under ``config_path``, None if there is none."""
    root = Path(config_path)
    for name in host_directory_names(host):
        candidate = root / name
        if candidate.exists():
            return candidate
    return None


# -- parsing hosts.toml ------------------------------------------------------------------------


def _abs(path: str, base: Path) -> str:
    return path if os.path.isabs(path) else str(base / path)


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"invalid value {value!r} for {what!r}: expected strings")
    return list(value)


def parse_duration(value: str) -> float:
    """A Go duration string (``"1s"``, ``"1m30s"``, ``"500ms"``) in seconds; InvalidArgument otherwise."""
    if not value.strip():
        raise InvalidArgument(f"invalid duration {value!r}")
    try:
        return go_duration(value)
    except ValueError:
        raise InvalidArgument(f"invalid duration {value!r}") from None


def _parse_entry(server: str, base: Path, cfg: dict[str, Any]) -> _HostEntry:
    """One ``[host."..."]`` table, or the root table with its ``server``."""
    entry = _HostEntry()
    override = cfg.get("override_path", False)
    if not isinstance(override, bool):
        raise InvalidArgument(f"invalid value {override!r} for 'override_path'")
    if server:
        if not server.startswith("http"):
            server = "https://" + server
        try:
            url = urlsplit(server)
        except ValueError as exc:
            raise InvalidArgument(f"unable to parse server {server}: {exc}") from exc
        entry.scheme, entry.host = url.scheme, url.netloc
        path = url.path
        if path:
            # Go's path.Clean; a bare "/" then gives "/v2" (containerd would make it "//v2").
            path = "/" + posixpath.normpath(path).lstrip("/")
            path = path.rstrip("/")
            if not path.endswith("/v2") and not override:
                path += "/v2"
        elif not override:
            path = "/v2"
        entry.path = path

    caps = cfg.get("capabilities")
    if caps:
        entry.capabilities = Capability(0)
        for cap in _strings(caps, "capabilities"):
            try:
                entry.capabilities |= Capability[cap.upper()]
            except KeyError:
                raise InvalidArgument(f"unknown capability {cap}") from None

    ca_files: list[str] = []
    if "ca" in cfg:
        ca = cfg["ca"]
        ca_files = [_abs(ca, base)] if isinstance(ca, str) else [_abs(p, base) for p in _strings(ca, "ca")]

    pairs: list[tuple[str, str]] = []
    if "client" in cfg:
        client = cfg["client"]
        if isinstance(client, str):
            pairs = [(_abs(client, base), "")]
        elif isinstance(client, list):
            for item in client:
                if isinstance(item, str):
                    pairs.append((_abs(item, base), ""))
                elif isinstance(item, list):
                    pair = _strings(item, "client")
                    if len(pair) != 2:
                        raise InvalidArgument(f"invalid pair {item!r} for 'client'")
                    # An empty key means the key is in the cert file: keep it empty, not made absolute.
                    pairs.append((_abs(pair[0], base), _abs(pair[1], base) if pair[1] else ""))
                else:
                    raise InvalidArgument(f"invalid type {type(item).__name__} for 'client'")
        else:
            raise InvalidArgument(f"invalid type {type(client).__name__} for 'client'")

    skip = cfg.get("skip_verify")
    if skip is not None and not isinstance(skip, bool):
        raise InvalidArgument(f"invalid value {skip!r} for 'skip_verify'")
    entry.tls = TLSSettings(tuple(ca_files), tuple(pairs), skip)

    header = cfg.get("header")
    if header is not None:
        if not isinstance(header, dict):
            raise InvalidArgument(f"invalid value {header!r} for 'header'")
        for key, value in header.items():
            if isinstance(value, str):
                entry.headers[key] = (value,)
            elif isinstance(value, list):
                entry.headers[key] = tuple(_strings(value, f"header {key}"))
            else:
                raise InvalidArgument(f"invalid type {type(value).__name__} for header {key!r}")

    timeout = cfg.get("dial_timeout")
    if timeout:
        if not isinstance(timeout, str):
            raise InvalidArgument(f"invalid value {timeout!r} for 'dial_timeout'")
        entry.dial_timeout = parse_duration(timeout)
    return entry


def parse_hosts_toml(text: str, base_dir: str | os.PathLike[str]) -> list[_HostEntry]:
    """The hosts of one ``hosts.toml``: ``[host."..."]`` tables in file order, then ``server``.

    Raises:
        InvalidArgument: the file is not TOML, or a field has a value containerd rejects.
    """
    base = Path(base_dir)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"invalid hosts.toml: {exc}") from exc
    # tomllib keeps tables in the order they first appear, which is the order containerd tries them.
    tables = data.get("host") or {}
    if not isinstance(tables, dict):
        raise InvalidArgument("invalid hosts.toml: 'host' must be a table")
    entries = [_parse_entry(name, base, cfg) for name, cfg in tables.items() if isinstance(cfg, dict)]
    server = data.get("server", "")
    if not isinstance(server, str):
        raise InvalidArgument(f"invalid value {server!r} for 'server'")
    entries.append(_parse_entry(server, base, data))
    return entries


def load_cert_files(directory: Path) -> list[_HostEntry]:
    """Docker's ``certs.d`` layout: ``*.crt`` CAs, ``*.cert`` client certs with an optional ``*.key``."""
    cas: list[str] = []
    pairs: list[tuple[str, str]] = []
    try:
        names = sorted(p.name for p in directory.iterdir() if not p.is_dir())
    except FileNotFoundError:
        names = []
    for name in names:
        if name.endswith(".crt"):
            cas.append(str(directory / name))
        if name.endswith(".cert"):
            key = directory / (name[: -len(".cert")] + ".key")
            pairs.append((str(directory / name), str(key) if key.exists() else ""))
    return [_HostEntry(tls=TLSSettings(tuple(cas), tuple(pairs), None))]


def load_host_dir(directory: Path) -> list[_HostEntry]:
    """The entries of one host directory; a ``hosts.toml`` containerd cannot read is logged and ignored."""
    hosts_file = directory / HOSTS_FILE
    try:
        text = hosts_file.read_text()
    except FileNotFoundError:
        text = ""
    if not text:
        return load_cert_files(directory)
    try:
        return parse_hosts_toml(text, directory)
    except InvalidArgument as exc:
        # containerd logs the error and falls back to the certificate files: so do we.
        log.error("failed to decode %s: %s", hosts_file, exc.message)
        return load_cert_files(directory)


# -- defaults ------------------------------------------------------------------------------------


def split_port(host: str) -> tuple[str, str]:
    """``(hostname, port)``; port "" when absent. IPv6 literals keep no brackets."""
    if host.startswith("["):
        end = host.find("]")
        name, rest = host[1:end], host[end + 1 :]
        return name, rest[1:] if rest.startswith(":") else ""
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        return name, port
    return host, ""


def is_localhost(host: str) -> bool:
    """``localhost`` or a loopback address, with or without a port."""
    name, _ = split_port(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _merge_tls(default: TLSSettings, host: TLSSettings) -> TLSSettings:
    """Per-host settings on top of the defaults (containerd clones the default TLS config, then adds)."""
    skip = host.skip_verify if host.skip_verify is not None else default.skip_verify
    return TLSSettings(default.ca_files + host.ca_files, default.client_pairs + host.client_pairs, skip)


def configure_hosts(
    host: str,
    *,
    config_path: str | os.PathLike[str] = "",
    default_scheme: str = "",
    default_tls: TLSSettings | None = None,
) -> list[RegistryHost]:
    """The endpoints to try for registry ``host``, in order, as containerd's ``ConfigureHosts`` gives them.

    Args:
        host: the registry domain of a reference (``docker.io``, ``127.0.0.1:5000``).
        config_path: directory of per-host ``hosts.toml`` files; "" for the defaults only.
        default_scheme: scheme for the registry itself when no ``server`` is configured
            (``ctr --plain-http`` gives ``http``); "" for containerd's rule.
        default_tls: TLS settings for every host (``ctr --skip-verify``, ``--tlscacert``...).
    """
    entries: list[_HostEntry] | None = None
    if config_path:
        directory = find_host_dir(config_path, host)
        if directory is not None:
            log.debug("loading host directory %s", directory)
            entries = load_host_dir(directory)
    if entries is None:
        entries = [_HostEntry()]
    if entries and not entries[-1].host:
        last = entries[-1]
        if host == "docker.io":
            last.scheme, last.host = "https", "registry-1.docker.io"
        elif is_localhost(host):
            last.host = host
            if default_scheme:
                last.scheme = default_scheme
            else:
                _, port = split_port(host)
                last.scheme = "https" if port in ("", "443") else "http"
                if port != "80":
                    # A local registry's certificate is rarely one a CA signed.
                    last.tls = TLSSettings(last.tls.ca_files, last.tls.client_pairs, True)
        else:
            last.host = host
            last.scheme = default_scheme or "https"
        last.path = "/v2"
        last.capabilities = Capability.all()

    out: list[RegistryHost] = []
    for entry in entries:
        tls = entry.tls if default_tls is None else _merge_tls(default_tls, entry.tls)
        scheme, fallback = entry.scheme, False
        explicit = default_tls is not None or entry.tls.explicit
        if scheme == "http" and explicit and split_port(entry.host)[1] != "80":
            # TLS was configured for a plain-http URL: try https first, then drop to http.
            scheme, fallback = "https", True
        out.append(
            RegistryHost(
                scheme=scheme,
                host=entry.host,
                path=entry.path,
                capabilities=entry.capabilities,
                tls=tls,
                headers=dict(entry.headers),
                http_fallback=fallback,
                dial_timeout=entry.dial_timeout,
            )
        )
    return out


def ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """An SSL context for ``tls``: system CAs plus ``ca_files``, client pairs, checks off on ``skip_verify``.

    Raises:
        InvalidArgument: a CA or client file cannot be read or is not a certificate/key.
    """
    ctx = ssl.create_default_context()
    if tls.skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    for ca in tls.ca_files:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidArgument(f"unable to load CA cert {ca!r}: {exc}") from exc
    for cert, key in tls.client_pairs:
        try:
            ctx.load_cert_chain(cert, key or None)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidArgument(f"failed to load X509 key pair {cert!r}: {exc}") from exc
    return ctx
