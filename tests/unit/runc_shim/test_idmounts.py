"""The shim's ID-mapped bind mounts for runtimes without them (runc 1.1), and the stdio owner."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from pycontainerd.runc_shim import idmounts
from pycontainerd.runc_shim.pipeio import ProcessIO
from tests.conformance.snapshotter import mounts_under

MAPPING = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def _runtime(tmp_path: Path, features: dict[str, object] | None) -> str:
    """A fake OCI runtime whose ``features`` prints ``features`` (or fails)."""
    script = tmp_path / f"fake-runc-{'yes' if features else 'no'}"
    body = f"echo '{json.dumps(features)}'" if features is not None else "exit 1"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def _bundle(tmp_path: Path) -> tuple[Path, Path, Path]:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "data").write_text("x")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    spec = {
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/data",
                "type": "bind",
                "source": str(volume),
                "options": ["rbind", "rw"],
                "uidMappings": MAPPING,
                "gidMappings": MAPPING,
            },
            {
                "destination": "/etc/hosts",
                "type": "bind",
                "source": str(hosts),
                "options": ["rbind", "ro"],
                "uidMappings": MAPPING,
                "gidMappings": MAPPING,
            },
            {"destination": "/plain", "type": "bind", "source": str(volume), "options": ["rbind"]},
        ]
    }
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle, volume, hosts


def test_runtime_features() -> None:
    idmounts.runtime_idmaps_mounts.cache_clear()
    assert idmounts.runtime_idmaps_mounts("/nonexistent/runc") is False
    # Debian 12's runc 1.1 has `features` but no mountExtensions.
    assert idmounts.runtime_idmaps_mounts("runc") is False


@pytest.mark.root
def test_prepare_and_release(tmp_path: Path) -> None:
    bundle, volume, hosts = _bundle(tmp_path)
    assert idmounts.prepare(str(bundle), _runtime(tmp_path, None)) == 2
    try:
        spec = json.loads((bundle / "config.json").read_text())
        data, etc_hosts = spec["mounts"][1], spec["mounts"][2]
        assert data["source"] == f"{bundle}/idmapped/0" and "uidMappings" not in data
        assert etc_hosts["source"] == f"{bundle}/idmapped/1" and "gidMappings" not in etc_hosts
        assert spec["mounts"][3]["source"] == str(volume)  # no mapping asked: untouched
        assert os.stat(f"{bundle}/idmapped/0/data").st_uid == 100000
        assert stat.S_ISREG(os.stat(f"{bundle}/idmapped/1").st_mode)
        assert os.stat(f"{bundle}/idmapped/1").st_uid == 100000
        assert os.stat(volume / "data").st_uid == os.stat(hosts).st_uid == 0  # the sources are not chowned
    finally:
        idmounts.release(str(bundle))
    assert mounts_under(tmp_path) == []
    assert not (bundle / "idmapped").exists()
    idmounts.release(str(bundle))  # idempotent


@pytest.mark.root
def test_runtime_that_idmaps_itself_gets_the_spec_as_is(tmp_path: Path) -> None:
    bundle, _, _ = _bundle(tmp_path)
    before = (bundle / "config.json").read_text()
    runtime = _runtime(tmp_path, {"linux": {"mountExtensions": {"idmap": {"enabled": True}}}})
    assert idmounts.prepare(str(bundle), runtime) == 0
    assert (bundle / "config.json").read_text() == before
    assert mounts_under(tmp_path) == []


@pytest.mark.root
def test_stdio_pipes_owned_by_the_mapped_root(tmp_path: Path) -> None:
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    io = ProcessIO.open("", str(fifo), "", owner=(100000, 100000))
    try:
        assert io.stdio.stdout is not None
        st = os.fstat(io.stdio.stdout)
        assert (st.st_uid, st.st_gid) == (100000, 100000)
    finally:
        io.abort()
    plain = ProcessIO.open("", str(fifo), "")
    try:
        assert plain.stdio.stdout is not None
        assert os.fstat(plain.stdio.stdout).st_uid == 0
    finally:
        plain.abort()


def test_legacy_create_options_io_owner() -> None:
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            low, n = n & 0x7F, n >> 7
            out.append(low | (0x80 if n else 0))
            if not n:
                return bytes(out)

    # cgroups_mode (7, a string), io_uid (10), io_gid (11), as ctr 1.6 sends for io.containerd.pyrunc.v2.
    value = varint(7 << 3 | 2) + varint(2) + b"v1" + varint(10 << 3) + varint(100000) + varint(11 << 3) + varint(7)
    assert idmounts.legacy_io_owner(value) == (100000, 7)
    assert idmounts.legacy_io_owner(varint(4 << 3) + varint(1)) is None  # terminal only
    assert idmounts.legacy_io_owner(varint(10 << 3) + b"\xff") is None  # truncated
