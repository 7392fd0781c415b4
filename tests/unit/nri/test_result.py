"""Merging several plugins' answers; ownership conflicts name both plugins."""

from __future__ import annotations

import pytest

from pycontainerd.nri import Adjustment, ConflictError, UpdateError, container, container_update, pb, pod_sandbox
from pycontainerd.nri.result import CreateResult
from pycontainerd.nri.updates import UpdateResult


def create_request() -> pb.CreateContainerRequest:
    return pb.CreateContainerRequest(
        pod=pod_sandbox(id="pod1", name="p"),
        container=container(
            id="c1",
            pod_sandbox_id="pod1",
            env=["A=1", "B=2"],
            mounts=[{"destination": "/m", "source": "/s", "type": "bind"}],
            annotations={"x": "1"},
        ),
    )


def test_env_conflict_names_both_plugins() -> None:
    result = CreateResult(create_request())
    result.apply(Adjustment().add_env("FOO", "1").response(), "10-first")
    with pytest.raises(ConflictError) as info:
        result.apply(Adjustment().add_env("FOO", "2").response(), "20-second")
    assert str(info.value) == 'plugins "20-second" and "10-first" both tried to set Env FOO'
    assert (info.value.plugin, info.value.other, info.value.field, info.value.key) == (
        "20-second",
        "10-first",
        "Env",
        "FOO",
    )


@pytest.mark.parametrize(
    ("first", "second", "what"),
    [
        (Adjustment().add_mount("/x", "/a"), Adjustment().add_mount("/x", "/b"), "Mounts /x"),
        (Adjustment().set_annotation("k", "1"), Adjustment().set_annotation("k", "2"), "Annotations k"),
        (Adjustment().set_resources(memory_limit=1), Adjustment().set_resources(memory_limit=2), "MemLimit"),
        (Adjustment().set_resources(cpuset_cpus="0"), Adjustment().set_resources(cpuset_cpus="1"), "CPUSetCPUs"),
        (Adjustment().set_oom_score_adj(1), Adjustment().set_oom_score_adj(2), "OomScoreAdj"),
        (Adjustment().set_cgroups_path("/a"), Adjustment().set_cgroups_path("/b"), "CgroupsPath"),
        (Adjustment().set_args(["a"]), Adjustment().set_args(["b"]), "Args"),
        (Adjustment().add_device("/dev/a", "c", 1, 1), Adjustment().add_device("/dev/a", "c", 1, 2), "Devices /dev/a"),
        (Adjustment().add_rlimit("RLIMIT_NOFILE", 1, 1), Adjustment().add_rlimit("RLIMIT_NOFILE", 2, 2), "Rlimits"),
    ],
)
def test_same_field_from_two_plugins_conflicts(first: Adjustment, second: Adjustment, what: str) -> None:
    result = CreateResult(create_request())
    result.apply(first.response(), "10-a")
    with pytest.raises(ConflictError, match=f'plugins "20-b" and "10-a" both tried to set {what}'):
        result.apply(second.response(), "20-b")


def test_different_fields_merge_and_later_plugins_see_earlier_changes() -> None:
    request = create_request()
    result = CreateResult(request)
    result.apply(Adjustment().add_env("A", "9").remove_env("B").add_mount("/n", "/src").response(), "10-a")
    assert list(request.container.env) == ["A=9"]
    assert [m.destination for m in request.container.mounts] == ["/m", "/n"]
    result.apply(Adjustment().add_env("C", "3").set_resources(memory_limit=5).response(), "20-b")
    merged = result.response().adjust
    assert [(e.key, e.value) for e in merged.env] == [("A", "9"), ("-B", ""), ("C", "3")]
    assert merged.linux.resources.memory.limit.value == 5
    assert request.container.linux.resources.memory.limit.value == 5


def test_a_later_plugin_may_override_by_removing_first() -> None:
    """As in Go: removing an entry clears its ownership, so remove+set overrides; plain set conflicts."""
    result = CreateResult(create_request())
    result.apply(Adjustment().add_env("Z", "1").response(), "10-a")
    result.apply(Adjustment().remove_env("Z").add_env("Z", "2").response(), "20-b")
    assert [(e.key, e.value) for e in result.response().adjust.env] == [("Z", "2")]
    with pytest.raises(ConflictError, match='"30-c" and "20-b" both tried to set Env Z'):
        result.apply(Adjustment().add_env("Z", "3").response(), "30-c")
    result = CreateResult(create_request())
    result.apply(Adjustment().remove_annotation("x").set_annotation("x", "new").response(), "10-a")
    assert result.response().adjust.annotations["x"] == "new"
    with pytest.raises(ConflictError, match='"20-b" and "10-a"'):
        result.apply(Adjustment().set_annotation("x", "other").response(), "20-b")


def test_hooks_from_several_plugins_accumulate() -> None:
    result = CreateResult(create_request())
    result.apply(Adjustment().add_hook("prestart", "/a").response(), "10-a")
    result.apply(Adjustment().add_hook("prestart", "/b").response(), "20-b")
    assert [h.path for h in result.response().adjust.hooks.prestart] == ["/a", "/b"]
    assert result.owners.owner("c1", 3) == "10-a,20-b"


def test_updating_the_container_being_created_is_refused() -> None:
    result = CreateResult(create_request())
    with pytest.raises(UpdateError, match="during creation"):
        result.apply(Adjustment().update("c1", cpu_shares=2).response(), "10-a")


def test_updates_of_other_containers_merge_and_conflict() -> None:
    result = UpdateResult(None)
    result.apply([container_update("other", cpu_shares=10)], "10-a")
    result.apply([container_update("other", memory_limit=100)], "20-b")
    (merged,) = result.response_updates()
    assert merged.linux.resources.cpu.shares.value == 10
    assert merged.linux.resources.memory.limit.value == 100
    with pytest.raises(ConflictError, match="CPUShares"):
        result.apply([container_update("other", cpu_shares=20)], "30-c")
    # An update marked ignore_failure is dropped instead of failing the request.
    result.apply([container_update("other", cpu_shares=30, ignore_failure=True)], "40-d")
    assert result.response_updates()[0].linux.resources.cpu.shares.value == 10


def test_update_container_result_carries_the_adjusted_target_last() -> None:
    request = pb.UpdateContainerRequest(
        pod=pod_sandbox(id="pod1"),
        container=container(id="c1", pod_sandbox_id="pod1"),
        linux_resources=pb.LinuxResources(cpu=pb.LinuxCPU(cpus="0-3")),
    )
    result = UpdateResult(request)
    result.apply([container_update("c1", cpuset_cpus="2"), container_update("c2", cpu_shares=5)], "10-a")
    updates = result.response_updates()
    assert [u.container_id for u in updates] == ["c2", "c1"]
    assert updates[-1].linux.resources.cpu.cpus == "2"
    untouched = UpdateResult(request)
    assert untouched.response_updates()[-1].linux.resources.cpu.cpus == "2"
