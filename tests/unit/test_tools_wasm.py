"""The wasm image builder: both layouts, importable OCI layout tars."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pycontainerd.tools.busybox import go_arch
from pycontainerd.tools.wasm import build_wasm_image, demo_module, main


def _blobs(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    with tarfile.open(path) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}  # type: ignore[union-attr]
    blobs = {"sha256:" + name.rsplit("/", 1)[1]: data for name, data in files.items() if name.startswith("blobs/")}
    return json.loads(files["index.json"]), blobs


def test_rootfs_layout_puts_the_module_in_a_filesystem_layer(tmp_path: Path) -> None:
    info = build_wasm_image(tmp_path / "r.tar", ref="example.com/w:1")
    index, blobs = _blobs(info.path)
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "example.com/w:1"
    manifest = json.loads(blobs[info.manifest_digest])
    config = json.loads(blobs[info.config_digest])
    assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/vnd.oci.image.layer.v1.tar+gzip"]
    assert (config["os"], config["architecture"]) == ("linux", go_arch())
    assert config["config"]["Entrypoint"] == ["/app.wasm"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blobs[manifest["layers"][0]["digest"]]))) as layer:
        assert layer.extractfile("app.wasm").read() == demo_module()  # type: ignore[union-attr]
    assert config["rootfs"]["diff_ids"] == list(info.diff_ids)


def test_layer_layout_keeps_the_module_out_of_the_rootfs(tmp_path: Path) -> None:
    module = b"\0asm\x01\0\0\0"
    info = build_wasm_image(tmp_path / "l.tar", module, layout="layer", platform="wasip1/wasm", module_name="m.wasm")
    _, blobs = _blobs(info.path)
    manifest = json.loads(blobs[info.manifest_digest])
    config = json.loads(blobs[info.config_digest])
    types = [layer["mediaType"] for layer in manifest["layers"]]
    assert types == ["application/vnd.oci.image.layer.v1.tar+gzip", "application/wasm"]
    wasm = manifest["layers"][1]
    assert blobs[wasm["digest"]] == module
    assert wasm["annotations"]["org.opencontainers.image.title"] == "m.wasm"
    assert len(config["rootfs"]["diff_ids"]) == 1  # the filesystem layer only
    assert (config["os"], config["architecture"]) == ("wasip1", "wasm")
    assert config["config"]["Entrypoint"] == ["m.wasm"]


def test_runwasi_layout_has_the_module_layer_alone(tmp_path: Path) -> None:
    info = build_wasm_image(tmp_path / "b.tar", layout="layer", platform="wasip1/wasm", filesystem_layer=False)
    _, blobs = _blobs(info.path)
    manifest = json.loads(blobs[info.manifest_digest])
    assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/wasm"]
    assert json.loads(blobs[info.config_digest])["rootfs"]["diff_ids"] == []


def test_builds_are_reproducible_and_the_cli_takes_wat(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = build_wasm_image(tmp_path / "a.tar", layout="layer")
    b = build_wasm_image(tmp_path / "b.tar", layout="layer")
    assert a.path.read_bytes() == b.path.read_bytes()
    wat = tmp_path / "m.wat"
    wat.write_text('(module (func (export "_start")))')
    assert main([str(tmp_path / "c.tar"), "--module", str(wat), "--layout", "layer"]) == 0
    assert "layer layout" in capsys.readouterr().out
    with pytest.raises(ValueError, match="layout"):
        build_wasm_image(tmp_path / "d.tar", layout="nope")
