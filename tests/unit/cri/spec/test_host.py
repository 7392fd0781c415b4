"""The host probes and the I/O callables the builders delegate to (no root needed)."""

from __future__ import annotations

import os
from pathlib import Path

from pycontainerd.cri.spec import SpecOptions, host_options
from pycontainerd.cri.spec.host import device_nodes, ensure_host_path, lookup_mount


def test_host_options_probe_this_host() -> None:
    opts = host_options(restrict_oom_score_adj=True, pod_annotations=("a.*",))
    assert isinstance(opts, SpecOptions)
    assert opts.restrict_oom_score_adj and opts.pod_annotations == ("a.*",)
    assert opts.cgroup_v2 == os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    assert opts.current_oom_score_adj == int(Path("/proc/self/oom_score_adj").read_text())
    assert opts.arch == os.uname().machine and opts.kernel_version[0] >= 3
    assert opts.all_capabilities and all(c.startswith("CAP_") for c in opts.all_capabilities)
    assert opts.host_devices is device_nodes and opts.prepare_host_path is ensure_host_path
    assert opts.disable_apparmor  # the default stays on whatever the host supports
    assert host_options(cgroup_v2=True).cgroup_v2  # facts can be overridden


def test_ensure_host_path_creates_and_resolves(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    assert ensure_host_path(str(target)) == str(target) and target.is_dir()
    os.symlink(target, tmp_path / "link")
    assert ensure_host_path(str(tmp_path / "link")) == str(target)


def test_lookup_mount_finds_the_enclosing_mount(tmp_path: Path) -> None:
    point, optional = lookup_mount(str(tmp_path))
    assert str(tmp_path).startswith(point)
    assert all(tag.split(":")[0] in ("shared", "master", "propagate_from", "unbindable") for tag in optional.split())
    assert lookup_mount("/proc/self")[0] == "/proc"


def test_device_nodes_of_a_single_node() -> None:
    assert [d.path for d in device_nodes("/dev/zero")] == ["/dev/zero"]
