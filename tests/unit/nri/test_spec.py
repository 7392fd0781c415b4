"""apply_adjustment: a merged NRI adjustment applied to an OCI spec dict."""

from __future__ import annotations

from typing import Any

import pytest

from pycontainerd.nri import Adjustment, SpecAdjustError, apply_adjustment, pb


def base_spec() -> dict[str, Any]:
    return {
        "process": {"args": ["sh"], "env": ["PATH=/bin", "KEEP=1", "DROP=1"], "oomScoreAdj": 100},
        "annotations": {"a": "1", "gone": "x"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data/deep/x", "type": "bind", "source": "/old"},
            {"destination": "/etc/hosts", "type": "bind", "source": "/h"},
        ],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/run/netns/x"}]},
    }


def test_env_is_replaced_in_place_removed_and_appended() -> None:
    spec = base_spec()
    adj = Adjustment().add_env("KEEP", "2").remove_env("DROP").add_env("NEW", "v")
    apply_adjustment(spec, adj.message)
    assert spec["process"]["env"] == ["PATH=/bin", "KEEP=2", "NEW=v"]


def test_annotations_add_and_remove() -> None:
    spec = base_spec()
    apply_adjustment(spec, Adjustment().set_annotation("b", "2").remove_annotation("gone").message)
    assert spec["annotations"] == {"a": "1", "b": "2"}


def test_mounts_replace_remove_and_sort_by_depth() -> None:
    spec = base_spec()
    adj = Adjustment().add_mount("/data", "/src", options=["rbind", "rshared"]).remove_mount("/etc/hosts")
    adj.add_mount("/data/deep/x", "/new", options=["rbind"])
    apply_adjustment(spec, adj.message)
    assert [(m["destination"], m["source"]) for m in spec["mounts"]] == [
        ("/data", "/src"),
        ("/proc", "proc"),
        ("/data/deep/x", "/new"),
    ]
    assert spec["linux"]["rootfsPropagation"] == "rshared"


def test_hooks_devices_rlimits_oom_cgroups_args() -> None:
    spec = base_spec()
    adj = (
        Adjustment()
        .add_hook("prestart", "/bin/hook", ["hook", "pre"], timeout=5)
        .add_hook("create_runtime", "/bin/cr")
        .add_device("/dev/fuse", "c", 10, 229, file_mode=0o666)
        .add_rlimit("RLIMIT_NOFILE", 1024, 512)
        .set_oom_score_adj(-500)
        .set_cgroups_path("/nri/ctr")
        .set_args(["sleep", "1"])
        .set_sysctl("net.ipv4.ip_forward", "1")
    )
    apply_adjustment(spec, adj.message)
    assert spec["hooks"]["prestart"] == [{"path": "/bin/hook", "args": ["hook", "pre"], "timeout": 5}]
    assert spec["hooks"]["createRuntime"] == [{"path": "/bin/cr"}]
    assert spec["linux"]["devices"] == [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666}
    ]
    assert spec["linux"]["resources"]["devices"] == [
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}
    ]
    assert spec["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512}]
    assert spec["process"]["oomScoreAdj"] == -500
    assert spec["linux"]["cgroupsPath"] == "/nri/ctr"
    assert spec["process"]["args"] == ["sleep", "1"]
    assert spec["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1"}


def test_device_removal() -> None:
    spec = base_spec()
    spec["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    apply_adjustment(spec, Adjustment().remove_device("/dev/fuse").message)
    assert spec["linux"]["devices"] == []


def test_resources() -> None:
    spec = base_spec()
    adj = Adjustment().set_resources(
        cpu_shares=512,
        cpu_quota=50000,
        cpu_period=100000,
        cpuset_cpus="0-1",
        cpuset_mems="0",
        memory_limit=1 << 30,
        memory_reservation=1 << 29,
        hugepage_limits={"2MB": 4 << 20},
        unified={"memory.high": "max"},
        pids_limit=64,
    )
    apply_adjustment(spec, adj.message)
    res = spec["linux"]["resources"]
    assert res["cpu"] == {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"}
    # The Go generator sets the swap limit along with the memory limit.
    assert res["memory"] == {"limit": 1 << 30, "swap": 1 << 30, "reservation": 1 << 29}
    assert res["hugepageLimits"] == [{"pageSize": "2MB", "limit": 4 << 20}]
    assert res["unified"] == {"memory.high": "max"}
    assert res["pids"] == {"limit": 64}


def test_unlimited_pids_and_namespace_changes() -> None:
    spec = base_spec()
    adj = Adjustment().set_resources(pids_limit=-1)
    adj.message.linux.namespaces.add(type="-network")
    adj.message.linux.namespaces.add(type="ipc", path="/proc/1/ns/ipc")
    apply_adjustment(spec, adj.message)
    assert spec["linux"]["resources"]["pids"] == {}
    assert spec["linux"]["namespaces"] == [{"type": "pid"}, {"type": "ipc", "path": "/proc/1/ns/ipc"}]


def test_classes_need_a_resolver() -> None:
    spec = base_spec()
    adj = Adjustment().set_resources(blockio_class="slow", rdt_class="gold")
    apply_adjustment(spec, adj.message)
    assert "blockIO" not in spec["linux"].get("resources", {})
    apply_adjustment(
        spec,
        adj.message,
        resolve_blockio=lambda name: {"weight": 10} if name == "slow" else None,
        resolve_rdt=lambda name: {"closID": name},
    )
    assert spec["linux"]["resources"]["blockIO"] == {"weight": 10}
    assert spec["linux"]["intelRdt"] == {"closID": "gold"}
    with pytest.raises(SpecAdjustError, match="unknown class"):
        apply_adjustment(spec, Adjustment().set_resources(blockio_class="x").message, resolve_blockio=lambda n: None)


def test_rdt_adjustment_and_removal() -> None:
    spec = base_spec()
    adj = pb.ContainerAdjustment()
    adj.linux.rdt.clos_id.value = "c1"
    adj.linux.rdt.schemata.value.extend(["L3:0=f"])
    apply_adjustment(spec, adj)
    assert spec["linux"]["intelRdt"] == {"closID": "c1", "schemata": ["L3:0=f"]}
    remove = pb.ContainerAdjustment()
    remove.linux.rdt.remove = True
    apply_adjustment(spec, remove)
    assert "intelRdt" not in spec["linux"]


def test_none_and_empty_adjustments_change_nothing() -> None:
    spec = base_spec()
    apply_adjustment(spec, None)
    apply_adjustment(spec, pb.ContainerAdjustment())
    assert spec == base_spec()
