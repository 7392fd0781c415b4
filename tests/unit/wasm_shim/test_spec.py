"""From an OCI spec to a run plan: argv, env, the module's path, preopens, limits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pycontainerd.core.images import Descriptor
from pycontainerd.errdefs import InvalidArgument, NotFound
from pycontainerd.wasm_shim.layers import compiled_path, pick_layer
from pycontainerd.wasm_shim.spec import Preopen, find_module, plan_from_spec, resolve_in_root


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "app.wasm").write_bytes(b"\0asm")
    (root / "bin" / "tool.wasm").write_bytes(b"\0asm")
    (root / "link.wasm").symlink_to("/bin/tool.wasm")
    (root / "escape.wasm").symlink_to("../../../../../../etc/passwd")
    (root / "abs-escape").symlink_to("/etc")
    return root


def spec(args: list[str], **extra: Any) -> dict[str, Any]:
    return {"process": {"args": args, "env": ["PATH=/bin", "A=1", "EMPTY=", "B=x=y"], "cwd": "/"}, **extra}


def test_args_env_entry_and_module(rootfs: Path) -> None:
    plan = plan_from_spec(spec(["/app.wasm#run", "x", "y"]), str(rootfs), "c1")
    assert plan.args == ("/app.wasm", "x", "y")
    assert plan.entry == "run"
    assert plan.env == (("PATH", "/bin"), ("A", "1"), ("EMPTY", ""), ("B", "x=y"))
    assert plan.module_path == str(rootfs / "app.wasm")
    assert plan.preopens == (Preopen(str(rootfs), "/", writable=True),)
    assert not plan.placeholder and plan.memory_limit == 0


def test_module_lookup_follows_path_cwd_and_links_inside_the_root(rootfs: Path) -> None:
    assert find_module(str(rootfs), "tool.wasm", "/", "/bin") == str(rootfs / "bin" / "tool.wasm")
    assert find_module(str(rootfs), "app.wasm", "/", "") == str(rootfs / "app.wasm")
    assert find_module(str(rootfs), "./tool.wasm", "/bin", "") == str(rootfs / "bin" / "tool.wasm")
    assert find_module(str(rootfs), "/link.wasm") == str(rootfs / "bin" / "tool.wasm")
    assert find_module(str(rootfs), "tool.wasm", "/", "") == ""  # not on PATH
    assert find_module(str(rootfs), "/missing.wasm") == ""
    assert find_module(str(rootfs), "") == ""


def test_links_never_leave_the_root(rootfs: Path) -> None:
    # A link out of the rootfs resolves inside it: the host's /etc/passwd is never read.
    with pytest.raises(NotFound):
        resolve_in_root(str(rootfs), "/escape.wasm")
    assert find_module(str(rootfs), "/escape.wasm") == ""
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "passwd").write_text("the image's own")
    assert resolve_in_root(str(rootfs), "/escape.wasm") == str(rootfs / "etc" / "passwd")
    assert resolve_in_root(str(rootfs), "/abs-escape/passwd") == str(rootfs / "etc" / "passwd")
    assert resolve_in_root(str(rootfs), "/../../app.wasm") == str(rootfs / "app.wasm")
    with pytest.raises(NotFound):
        resolve_in_root(str(rootfs), "/nope/app.wasm")
    (rootfs / "loop").symlink_to("loop")
    with pytest.raises(InvalidArgument, match="too many levels"):
        resolve_in_root(str(rootfs), "/loop")


def test_bind_mounts_of_directories_are_preopened(rootfs: Path, tmp_path: Path) -> None:
    data, ro, afile = tmp_path / "data", tmp_path / "ro", tmp_path / "file"
    data.mkdir()
    ro.mkdir()
    afile.write_text("x")
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
        {"destination": "/data", "type": "bind", "source": str(data), "options": ["rbind", "rw"]},
        {"destination": "/ro/", "source": str(ro), "options": ["rbind", "ro"]},
        {"destination": "/etc/hosts", "type": "bind", "source": str(afile), "options": ["rbind"]},
        {"destination": "/gone", "type": "bind", "source": str(tmp_path / "gone"), "options": ["rbind"]},
    ]
    plan = plan_from_spec(spec(["/app.wasm"], mounts=mounts, root={"readonly": True}), str(rootfs), "c")
    assert plan.preopens == (
        Preopen(str(rootfs), "/", writable=False),
        Preopen(str(data), "/data", writable=True),
        Preopen(str(ro), "/ro", writable=False),
    )


def test_memory_limit_sandbox_placeholder_and_errors(rootfs: Path) -> None:
    limited = spec(["/app.wasm"], linux={"resources": {"memory": {"limit": 64 << 20}}})
    assert plan_from_spec(limited, str(rootfs), "c").memory_limit == 64 << 20
    unlimited = spec(["/app.wasm"], linux={"resources": {"memory": {"limit": -1}}})
    assert plan_from_spec(unlimited, str(rootfs), "c").memory_limit == 0
    sandbox = {"process": {"args": ["/pause"]}, "annotations": {"io.kubernetes.cri.container-type": "sandbox"}}
    assert plan_from_spec(sandbox, str(rootfs), "pod").placeholder
    with pytest.raises(InvalidArgument, match="no process arguments"):
        plan_from_spec({"process": {"args": []}}, str(rootfs), "c")
    layered = plan_from_spec(spec(["app.wasm"]), str(rootfs / "bin"), "c")
    assert layered.module_path == ""  # not in this rootfs: the image's wasm layers are asked


def test_pick_layer_and_cache_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fs = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", "sha256:" + "0" * 64, 1)
    first = Descriptor("application/wasm", "sha256:" + "1" * 64, 1, {"org.opencontainers.image.title": "a.wasm"})
    second = Descriptor("application/wasm", "sha256:" + "2" * 64, 1, {"org.opencontainers.image.title": "b.wasm"})
    assert pick_layer([fs, first, second], "/x/b.wasm") == second
    assert pick_layer([fs, first, second], "other.wasm") == first
    assert pick_layer([fs], "a.wasm") is None
    monkeypatch.setenv("PYCONTAINERD_WASM_CACHE", str(tmp_path))
    key = compiled_path(first.digest, "engine-1")
    assert key.startswith(str(tmp_path)) and key != compiled_path(first.digest, "engine-2")
    assert os.path.dirname(key) == str(tmp_path / "compiled")
