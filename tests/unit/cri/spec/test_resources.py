"""Cgroup resources, zero values, swap, hugepages, cgroup paths, OOM score adjustment, UpdateContainerResources."""

from __future__ import annotations

from typing import Any

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri.spec import cgroups_path, update_resources
from pycontainerd.errdefs import FailedPrecondition
from tests.unit.cri.spec.helpers import build, build_sandbox, container_config, options, sandbox_config


def test_resources_like_containerd() -> None:
    res = build()["linux"]["resources"]
    assert res["cpu"] == {"period": 100, "quota": 200, "shares": 300, "cpus": "0-1", "mems": "2-3"}
    assert res["memory"] == {"limit": 400}  # no swap controller on this (pretend) host
    assert res["unified"] == {"memory.min": "65536", "memory.swap.max": "1024"}


def test_zero_values_are_not_set() -> None:
    config = container_config()
    config.linux.resources.CopyFrom(api.LinuxContainerResources())
    spec = build(config)
    assert set(spec["linux"]["resources"]) == {"devices"}
    assert spec["process"]["oomScoreAdj"] == 0  # resources present: the score is set even when 0


def test_no_resources_no_oom_score() -> None:
    config = container_config()
    config.linux.ClearField("resources")
    assert "oomScoreAdj" not in build(config)["process"]


@pytest.mark.parametrize(
    ("limit", "swap", "expected"), [(400, 0, 400), (400, 1000, 1000), (0, 1000, 1000), (400, -1, -1)]
)
def test_swap_follows_the_memory_limit(limit: int, swap: int, expected: int) -> None:
    config = container_config()
    config.linux.resources.memory_limit_in_bytes = limit
    config.linux.resources.memory_swap_limit_in_bytes = swap
    assert build(config, opts=options(swap_controller=True))["linux"]["resources"]["memory"]["swap"] == expected


def _hugepages(**opts: Any) -> dict[str, Any]:
    config = container_config()
    config.linux.resources.hugepage_limits.append(api.HugepageLimit(page_size="2MB", limit=1 << 30))
    resources: dict[str, Any] = build(config, opts=options(**opts))["linux"]["resources"]
    return resources


def test_hugepages() -> None:
    enabled = {"disable_hugetlb_controller": False, "hugetlb_controller": True}
    assert _hugepages(**enabled)["hugepageLimits"] == [{"pageSize": "2MB", "limit": 1 << 30}]
    assert "hugepageLimits" not in _hugepages()  # containerd's default: controller disabled
    assert "hugepageLimits" not in _hugepages(disable_hugetlb_controller=False)  # missing, tolerated
    with pytest.raises(FailedPrecondition, match="hugetlb"):
        _hugepages(disable_hugetlb_controller=False, tolerate_missing_hugetlb_controller=False)


@pytest.mark.parametrize(
    ("parent", "systemd", "expected"),
    [
        # containerd's TestGetCgroupsPath, plus the no-parent cases.
        ("/a/b", False, "/a/b/ctr"),
        ("a.slice/b.slice/c.slice", False, "c.slice:cri-containerd:ctr"),
        ("/kubepods.slice/kubepods-burstable.slice", True, "kubepods-burstable.slice:cri-containerd:ctr"),
        ("/a/b", True, "/a/b/ctr"),  # the parent's form decides, not the driver
        ("", False, ""),
        ("", True, ":cri-containerd:ctr"),
    ],
)
def test_cgroups_path(parent: str, systemd: bool, expected: str) -> None:
    assert cgroups_path(parent, "ctr", systemd=systemd) == expected


def test_cgroups_path_in_specs() -> None:
    assert build()["linux"]["cgroupsPath"] == "/test/cgroup/parent/test-id"
    assert build_sandbox()["linux"]["cgroupsPath"] == "/test/cgroup/parent/test-id"
    pod = sandbox_config()
    pod.linux.cgroup_parent = ""
    assert build(sandbox=pod)["linux"]["cgroupsPath"] == "/k8s.io/test-id"  # containerd's default
    pod.linux.cgroup_parent = "/kubepods.slice/kubepods-pod1.slice"
    assert build(sandbox=pod)["linux"]["cgroupsPath"] == "kubepods-pod1.slice:cri-containerd:test-id"


def test_disable_cgroup() -> None:
    linux = build(opts=options(disable_cgroup=True))["linux"]
    assert "cgroupsPath" not in linux and set(linux["resources"]) == {"devices"}


@pytest.mark.parametrize(("restrict", "current", "expected"), [(False, 0, 500), (True, 0, 500), (True, 800, 800)])
def test_container_oom_score_clamp(restrict: bool, current: int, expected: int) -> None:
    spec = build(opts=options(restrict_oom_score_adj=restrict, current_oom_score_adj=current))
    assert spec["process"]["oomScoreAdj"] == expected


@pytest.mark.parametrize(
    ("restrict", "current", "expected"), [(False, -500, -998), (True, -999, -998), (True, -500, -500)]
)
def test_sandbox_oom_score_clamp(restrict: bool, current: int, expected: int) -> None:
    spec = build_sandbox(opts=options(restrict_oom_score_adj=restrict, current_oom_score_adj=current))
    assert spec["process"]["oomScoreAdj"] == expected


def test_update_resources_copies() -> None:
    spec = build()
    new = api.LinuxContainerResources(cpu_quota=5000, memory_limit_in_bytes=1 << 20, cpuset_cpus="3")
    new.unified["memory.high"] = "900000"
    updated = update_resources(spec, new, options(swap_controller=True))
    res = updated["linux"]["resources"]
    assert res["cpu"] == {"period": 100, "quota": 5000, "shares": 300, "cpus": "3", "mems": "2-3"}
    assert res["memory"] == {"limit": 1 << 20, "swap": 1 << 20}
    assert res["unified"]["memory.high"] == "900000" and res["unified"]["memory.min"] == "65536"
    assert spec["linux"]["resources"]["cpu"]["quota"] == 200  # the original is untouched
