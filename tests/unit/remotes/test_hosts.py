"""containerd's hosts.toml layout and defaults, read the way containerd reads them."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from pycontainerd.errdefs import InvalidArgument
from pycontainerd.remotes.hosts import (
    Capability,
    RegistryHost,
    TLSSettings,
    configure_hosts,
    find_host_dir,
    host_directory_names,
    is_localhost,
    parse_duration,
    parse_hosts_toml,
    ssl_context,
)

ALL = Capability.all()


def write(root: Path, host_dir: str, text: str) -> Path:
    d = root / host_dir
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts.toml").write_text(text)
    return d


def summary(hosts: list[RegistryHost]) -> list[tuple[str, str, str, Capability]]:
    return [(h.scheme, h.host, h.path, h.capabilities) for h in hosts]


# -- defaults, no configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("registry", "scheme", "host", "skip_verify", "fallback"),
    [
        ("docker.io", "https", "registry-1.docker.io", None, False),
        ("ghcr.io", "https", "ghcr.io", None, False),
        ("example.com:5000", "https", "example.com:5000", None, False),
        ("localhost", "https", "localhost", True, False),
        ("localhost:443", "https", "localhost:443", True, False),
        ("localhost:5000", "https", "localhost:5000", True, True),
        ("127.0.0.1:5000", "https", "127.0.0.1:5000", True, True),
        ("[::1]:5000", "https", "[::1]:5000", True, True),
        ("localhost:80", "http", "localhost:80", None, False),
        ("127.0.0.2:80", "http", "127.0.0.2:80", None, False),
    ],
)
def test_defaults(registry: str, scheme: str, host: str, skip_verify: bool | None, fallback: bool) -> None:
    (only,) = configure_hosts(registry)
    assert (only.scheme, only.host, only.path, only.capabilities) == (scheme, host, "/v2", ALL)
    assert only.tls.skip_verify is skip_verify
    assert only.http_fallback is fallback
    assert only.base_url == f"{scheme}://{host}/v2"


def test_default_scheme() -> None:
    (remote,) = configure_hosts("example.com", default_scheme="http")
    assert (remote.scheme, remote.http_fallback) == ("http", False)
    # For loopback the caller's scheme replaces containerd's port rule, and no TLS is implied.
    (local,) = configure_hosts("localhost:5000", default_scheme="http")
    assert (local.scheme, local.http_fallback, local.tls.skip_verify) == ("http", False, None)


def test_default_tls_applies_everywhere() -> None:
    tls = TLSSettings(ca_files=("/ca.pem",))
    (remote,) = configure_hosts("example.com", default_tls=tls)
    assert remote.tls == tls
    # Plain http with TLS configured: https first, http as a fallback (not on port 80).
    (plain,) = configure_hosts("example.com:5000", default_scheme="http", default_tls=tls)
    assert (plain.scheme, plain.http_fallback) == ("https", True)
    (port80,) = configure_hosts("example.com:80", default_scheme="http", default_tls=tls)
    assert (port80.scheme, port80.http_fallback) == ("http", False)


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1", True),
        ("127.1.2.3:80", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("example.com", False),
        ("10.0.0.1:5000", False),
    ],
)
def test_is_localhost(host: str, local: bool) -> None:
    assert is_localhost(host) is local


# -- finding the directory -----------------------------------------------------------------------


def test_directory_names() -> None:
    assert host_directory_names("reg.io:5000") == ["reg.io_5000_", "reg.io:5000", "_default"]
    assert host_directory_names("reg.io") == ["reg.io", "_default"]


def test_directory_lookup_order(tmp_path: Path) -> None:
    assert find_host_dir(tmp_path, "reg.io:5000") is None
    write(tmp_path, "_default", 'server = "https://default.example"\n')
    assert find_host_dir(tmp_path, "reg.io:5000") == tmp_path / "_default"
    write(tmp_path, "reg.io:5000", 'server = "https://colon.example"\n')
    assert find_host_dir(tmp_path, "reg.io:5000") == tmp_path / "reg.io:5000"
    write(tmp_path, "reg.io_5000_", 'server = "https://underscore.example"\n')
    assert find_host_dir(tmp_path, "reg.io:5000") == tmp_path / "reg.io_5000_"
    (host,) = configure_hosts("reg.io:5000", config_path=tmp_path)
    assert host.host == "underscore.example"
    (other,) = configure_hosts("other.io", config_path=tmp_path)
    assert other.host == "default.example"


# -- hosts.toml ----------------------------------------------------------------------------------


MIRRORS = """
server = "https://registry-1.docker.io"

[host."https://public-mirror.example.com"]
  capabilities = ["pull"]

[host."https://docker-mirror.internal"]
  capabilities = ["pull", "resolve"]
  ca = "docker-mirror.crt"

[host."http://insecure.example:5000"]
  capabilities = ["pull", "resolve", "push"]
  skip_verify = true

[host."https://mirror.example/us"]
  capabilities = ["PULL"]

[host."https://nonstandard.example/api"]
  override_path = true

[host."mirror-without-scheme.example"]
"""


def test_mirrors_in_file_order_then_server(tmp_path: Path) -> None:
    d = write(tmp_path, "docker.io", MIRRORS)
    hosts = configure_hosts("docker.io", config_path=tmp_path)
    pull, resolve = Capability.PULL, Capability.PULL | Capability.RESOLVE
    assert summary(hosts) == [
        ("https", "public-mirror.example.com", "/v2", pull),
        ("https", "docker-mirror.internal", "/v2", resolve),
        ("https", "insecure.example:5000", "/v2", resolve | Capability.PUSH),  # TLS setting: https first
        ("https", "mirror.example", "/us/v2", pull),
        ("https", "nonstandard.example", "/api", ALL),
        ("https", "mirror-without-scheme.example", "/v2", ALL),
        ("https", "registry-1.docker.io", "/v2", ALL),
    ]
    assert hosts[1].tls.ca_files == (str(d / "docker-mirror.crt"),)
    assert (hosts[2].tls.skip_verify, hosts[2].http_fallback) == (True, True)
    assert all(not h.http_fallback for i, h in enumerate(hosts) if i != 2)
    assert [h.is_mirror_for("docker.io") for h in hosts] == [True] * 6 + [False]


def test_without_server_the_registry_itself_comes_last(tmp_path: Path) -> None:
    write(tmp_path, "docker.io", '[host."https://mirror.example"]\n  capabilities = ["pull"]\n')
    hosts = configure_hosts("docker.io", config_path=tmp_path)
    assert summary(hosts) == [
        ("https", "mirror.example", "/v2", Capability.PULL),
        ("https", "registry-1.docker.io", "/v2", ALL),
    ]
    write(tmp_path, "_default", '[host."https://mirror.example"]\n')
    assert [h.host for h in configure_hosts("localhost:5000", config_path=tmp_path)] == [
        "mirror.example",
        "localhost:5000",
    ]


def test_server_only_replaces_the_registry(tmp_path: Path) -> None:
    write(tmp_path, "_default", 'server = "http://registry.example.com:8080"\ncapabilities = ["pull", "resolve"]\n')
    assert summary(configure_hosts("quay.io", config_path=tmp_path)) == [
        ("http", "registry.example.com:8080", "/v2", Capability.PULL | Capability.RESOLVE)
    ]


@pytest.mark.parametrize(
    ("server", "override", "path"),
    [
        ("https://r.example", False, "/v2"),
        ("https://r.example/", False, "/v2"),
        ("https://r.example/v2", False, "/v2"),
        ("https://r.example/a/../b/", False, "/b/v2"),
        ("https://r.example", True, ""),
        ("https://r.example/custom/api", True, "/custom/api"),
    ],
)
def test_server_paths(tmp_path: Path, server: str, override: bool, path: str) -> None:
    text = f'server = "{server}"\noverride_path = {str(override).lower()}\n'
    write(tmp_path, "x.io", text)
    (host,) = configure_hosts("x.io", config_path=tmp_path)
    assert host.path == path


def test_tls_and_headers(tmp_path: Path) -> None:
    text = """
server = "https://r.example"
ca = ["/etc/certs/a.pem", "rel.pem"]
client = [["/c/client.cert", "/c/client.key"], ["both.pem", ""]]
skip_verify = false
dial_timeout = "1.5s"

[header]
  x-one = "1"
  x-many = ["a", "b"]

[host."https://m.example"]
  ca = "mirror.crt"
  client = "mirror-client.pem"
  [host."https://m.example".header]
    x-mirror = "yes"

[host."https://n.example"]
  client = ["one.pem", "two.pem"]
"""
    d = write(tmp_path, "r.example", text)
    mirror, other, server = configure_hosts("r.example", config_path=tmp_path)
    assert mirror.tls == TLSSettings((str(d / "mirror.crt"),), ((str(d / "mirror-client.pem"), ""),), None)
    assert mirror.headers == {"x-mirror": ("yes",)}
    assert other.tls.client_pairs == ((str(d / "one.pem"), ""), (str(d / "two.pem"), ""))
    assert server.tls == TLSSettings(
        ("/etc/certs/a.pem", str(d / "rel.pem")),
        (("/c/client.cert", "/c/client.key"), (str(d / "both.pem"), "")),
        False,
    )
    assert server.headers == {"x-one": ("1",), "x-many": ("a", "b")}
    assert server.dial_timeout == 1.5
    assert mirror.dial_timeout is None


@pytest.mark.parametrize(
    "text",
    [
        'server = "https://r.example"\ncapabilities = ["pull", "fly"]\n',
        'server = "https://r.example"\nca = 3\n',
        'server = "https://r.example"\nclient = [["only-one"]]\n',
        'server = "https://r.example"\nclient = 7\n',
        'server = "https://r.example"\nskip_verify = "yes"\n',
        'server = "https://r.example"\n[header]\nx = 1\n',
        'server = "https://r.example"\ndial_timeout = "soon"\n',
        "server = [",
    ],
)
def test_invalid_files_are_rejected(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_hosts_toml(text, "/base")


def test_unreadable_file_falls_back_to_cert_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = write(tmp_path, "r.example", 'server = "https://elsewhere"\ncapabilities = ["fly"]\n')
    (d / "ca.crt").write_text("x")
    with caplog.at_level(logging.ERROR):
        (host,) = configure_hosts("r.example", config_path=tmp_path)
    assert "failed to decode" in caplog.text
    assert (host.host, host.tls.ca_files) == ("r.example", (str(d / "ca.crt"),))


def test_docker_cert_files(tmp_path: Path) -> None:
    d = tmp_path / "r.example:5000"
    d.mkdir()
    for name in ("ca.crt", "client.cert", "client.key", "solo.cert", "ignored.txt"):
        (d / name).write_text("x")
    (d / "sub.crt").mkdir()
    (host,) = configure_hosts("r.example:5000", config_path=tmp_path)
    assert (host.scheme, host.host, host.path, host.capabilities) == ("https", "r.example:5000", "/v2", ALL)
    assert host.tls.ca_files == (str(d / "ca.crt"),)
    assert host.tls.client_pairs == ((str(d / "client.cert"), str(d / "client.key")), (str(d / "solo.cert"), ""))


def test_empty_file_is_cert_files(tmp_path: Path) -> None:
    write(tmp_path, "r.example", "")
    (host,) = configure_hosts("r.example", config_path=tmp_path)
    assert (host.scheme, host.host) == ("https", "r.example")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("500ms", 0.5), ("1m30s", 90.0), ("2h", 7200.0), ("1.5s", 1.5), ("0", 0.0), ("10us", 1e-5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


# -- SSL contexts --------------------------------------------------------------------------------


def test_ssl_context_skip_verify() -> None:
    ctx = ssl_context(TLSSettings(skip_verify=True))
    assert (ctx.check_hostname, ctx.verify_mode) == (False, ssl.CERT_NONE)
    strict = ssl_context(TLSSettings())
    assert (strict.check_hostname, strict.verify_mode) == (True, ssl.CERT_REQUIRED)


def test_ssl_context_bad_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(InvalidArgument):
        ssl_context(TLSSettings(ca_files=(str(junk),)))
    with pytest.raises(InvalidArgument):
        ssl_context(TLSSettings(ca_files=(str(tmp_path / "missing.pem"),)))
    with pytest.raises(InvalidArgument):
        ssl_context(TLSSettings(client_pairs=((str(junk), ""),)))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_ssl_context_loads_ca_and_client_pairs(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    combined = tmp_path / "both.pem"
    combined.write_text(cert.read_text() + key.read_text())
    ctx = ssl_context(TLSSettings((str(cert),), ((str(cert), str(key)), (str(combined), "")), None))
    assert any(c.get("subject") == ((("commonName", "test"),),) for c in ctx.get_ca_certs())
