"""The foundation against Debian's real ``ctr``: version, namespaces, plugins."""

from __future__ import annotations

import re
import sqlite3
import tempfile
from pathlib import Path

import pytest

from tests.support.daemon import DaemonProcess, running_daemon

pytestmark = pytest.mark.integration


def test_version_shows_our_server(daemon: DaemonProcess) -> None:
    out = daemon.ctr("version").stdout
    server = out.split("Server:")[1]
    version = re.search(r"Version:\s+(\S+)", server)
    assert version, out
    assert re.fullmatch(r"v2\.\d+\.\d+\+pycontainerd\.[0-9.]+", version.group(1)), out
    uuid = re.search(r"UUID:\s+([0-9a-f-]{36})", server)
    assert uuid, out


def test_uuid_survives_restart() -> None:
    with running_daemon() as d:
        first = re.findall(r"UUID:\s+(\S+)", d.ctr("version").stdout)
        assert d.stop() == 0
        d.start()
        assert re.findall(r"UUID:\s+(\S+)", d.ctr("version").stdout) == first


def namespaces(d: DaemonProcess) -> dict[str, str]:
    lines = d.ctr("namespaces", "ls").stdout.splitlines()
    assert lines[0].split() == ["NAME", "LABELS"]
    out = {}
    for line in lines[1:]:
        parts = line.split()
        out[parts[0]] = parts[1] if len(parts) > 1 else ""
    return out


def test_namespaces_lifecycle(daemon: DaemonProcess) -> None:
    assert namespaces(daemon) == {}
    daemon.ctr("namespaces", "create", "team-a", "owner=me")
    daemon.ctr("namespaces", "create", "team-b")
    assert namespaces(daemon) == {"team-a": "owner=me", "team-b": ""}

    daemon.ctr("namespaces", "label", "team-b", "x=1", "y=2")
    assert namespaces(daemon)["team-b"] == "x=1,y=2"
    daemon.ctr("namespaces", "label", "team-b", "x=")
    assert namespaces(daemon)["team-b"] == "y=2"

    daemon.ctr("namespaces", "rm", "team-a")
    assert set(namespaces(daemon)) == {"team-b"}


def test_namespace_errors_match_containerd(daemon: DaemonProcess) -> None:
    daemon.ctr("namespaces", "create", "dup")
    again = daemon.ctr("namespaces", "create", "dup", check=False)
    assert again.returncode == 1
    assert 'namespace "dup": already exists' in again.stderr

    bad = daemon.ctr("namespaces", "create", "bad..name", check=False)
    assert bad.returncode == 1
    assert 'identifier "bad..name" must match' in bad.stderr
    assert "invalid argument" in bad.stderr

    # ctr ignores NotFound on rm (as with containerd), printing the name.
    assert daemon.ctr("namespaces", "rm", "never-existed").returncode == 0


def test_non_empty_namespace_cannot_be_removed(daemon: DaemonProcess) -> None:
    daemon.ctr("namespaces", "create", "busy")
    # Put an image record straight into the metadata store (the images service is a later issue).
    db = sqlite3.connect(daemon.root / "io.containerd.metadata.v1.bolt" / "meta.db", timeout=10)
    with db:
        db.execute("INSERT INTO images VALUES ('busy', 'img', 'm', 'sha256:00', 1, '{}', 0, 0)")
    db.close()
    result = daemon.ctr("namespaces", "rm", "busy", check=False)
    assert result.returncode == 1
    assert 'namespace "busy" must be empty, but it still has images: failed precondition' in result.stderr
    assert "busy" in namespaces(daemon)


def plugin_rows(d: DaemonProcess) -> dict[str, str]:
    lines = d.ctr("plugins", "ls").stdout.splitlines()
    assert lines[0].split() == ["TYPE", "ID", "PLATFORMS", "STATUS"]
    return {f"{p[0]}.{p[1]}": p[-1] for p in (line.split() for line in lines[1:])}


def test_plugins_ls_reports_ok_skip_error() -> None:
    plugin_code = (
        "from pycontainerd.plugin.registration import Registration, SkipPlugin\n"
        "def skip(ctx):\n    raise SkipPlugin('no such hardware')\n"
        "def fail(ctx):\n    raise RuntimeError('broken on purpose')\n"
        "REGISTRATIONS = [Registration(type='io.example.v1', id='skipper', init=skip),\n"
        "                 Registration(type='io.example.v1', id='breaker', init=fail),\n"
        "                 Registration(type='io.example.v1', id='fine', init=lambda ctx: object())]\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "example.py").write_text(plugin_code)
        with running_daemon(top_level=f'plugin_dir = "{tmp}"') as d:
            rows = plugin_rows(d)
            assert rows["io.example.v1.skipper"] == "skip"
            assert rows["io.example.v1.breaker"] == "error"
            assert rows["io.example.v1.fine"] == "ok"
            assert rows["io.containerd.grpc.v1.version"] == "ok"
            assert rows["io.containerd.metadata.v1.bolt"] == "ok"
            detail = d.ctr("plugins", "ls", "-d", "id==breaker").stdout
            assert "broken on purpose" in detail
            only_grpc = plugin_rows_filtered(d, "type==io.containerd.grpc.v1")
            assert only_grpc
            assert all(k.startswith("io.containerd.grpc.v1.") for k in only_grpc)


def plugin_rows_filtered(d: DaemonProcess, flt: str) -> list[str]:
    lines = d.ctr("plugins", "ls", flt).stdout.splitlines()[1:]
    return [f"{p[0]}.{p[1]}" for p in (line.split() for line in lines)]
