from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from pycontainerd.errdefs import AlreadyExists, InvalidArgument, NotFound
from pycontainerd.runtime.v2.bundle import load_bundles, new_bundle
from pycontainerd.runtime.v2.config import RuntimeEntry
from pycontainerd.runtime.v2.shim import Bootstrap, binary_for, parse_start_output, shim_args


def test_start_output_forms() -> None:
    assert parse_start_output(b"unix:///run/containerd/s/abc") == Bootstrap("unix:///run/containerd/s/abc")
    boot = parse_start_output(json.dumps({"version": 3, "address": "unix:///x.sock", "protocol": "ttrpc"}).encode())
    assert (boot.version, boot.socket_path) == (3, "/x.sock")
    assert Bootstrap("ttrpc+unix:///y.sock").socket_path == "/y.sock"


def test_shim_args_match_containerd() -> None:
    args = shim_args("/bin/shim", "ns", "/run/x.sock", "c1", "start", debug=True)
    assert args == [
        "/bin/shim",
        "-namespace",
        "ns",
        "-address",
        "/run/x.sock",
        "-publish-binary",
        "/bin/shim",
        "-id",
        "c1",
        "-debug",
        "start",
    ]


def test_binary_resolution() -> None:
    assert binary_for("/opt/my-shim") == "/opt/my-shim"
    with pytest.raises(NotFound, match="containerd-shim-nope-v9"):
        binary_for("io.containerd.nope.v9")
    with pytest.raises(InvalidArgument):
        binary_for("nodots")


def test_bundle_layout_and_reload(tmp_path: Path) -> None:
    bundle = new_bundle(tmp_path / "state", tmp_path / "root", "ns1", "c1", b'{"ociVersion":"1.1.0"}')
    assert (bundle.path / "config.json").read_bytes() == b'{"ociVersion":"1.1.0"}'
    assert stat.S_ISFIFO(bundle.log.stat().st_mode)
    assert os.readlink(bundle.path / "work") == str(tmp_path / "root" / "ns1" / "c1")
    with pytest.raises(AlreadyExists):
        new_bundle(tmp_path / "state", tmp_path / "root", "ns1", "c1", None)
    bundle.write_bootstrap("unix:///s.sock", "ttrpc", 2, "/bin/shim", "io.containerd.runc.v2")
    (reloaded,) = load_bundles(tmp_path / "state", tmp_path / "root")
    assert reloaded.read_bootstrap() == ("unix:///s.sock", "ttrpc", 2)
    assert reloaded.read("runtime") == "io.containerd.runc.v2"
    reloaded.delete()
    assert not bundle.path.exists() and not bundle.work.exists()
    with pytest.raises(InvalidArgument, match="invalid task id"):
        new_bundle(tmp_path / "state", tmp_path / "root", "ns1", "bad..id", None)


def test_runtime_options() -> None:
    from google.protobuf import any_pb2

    from pycontainerd.api.containerd.types.runc.options import oci_pb2

    raw = RuntimeEntry(path="x", options={"BinaryName": "crun", "SystemdCgroup": True}).runc_options("n")
    assert raw is not None
    packed = any_pb2.Any.FromString(raw)
    assert packed.type_url == "containerd.runc.v1.Options"
    opts = oci_pb2.Options.FromString(packed.value)
    assert (opts.binary_name, opts.systemd_cgroup) == ("crun", True)
    assert RuntimeEntry().runc_options("n") is None
    with pytest.raises(InvalidArgument, match="unknown option 'Bogus'"):
        RuntimeEntry(options={"Bogus": 1}).runc_options("n")
