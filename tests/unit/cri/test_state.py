"""What the CRI plugin persists about pods and containers, names, and ID lookups."""

from __future__ import annotations

from pathlib import Path

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri import state
from pycontainerd.errdefs import AlreadyExists, NotFound


def _pod_config() -> api.PodSandboxConfig:
    config = api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name="web", namespace="prod", uid="u1", attempt=2), hostname="web"
    )
    config.labels["app"] = "web"
    return config


def test_names_follow_kubelets_metadata() -> None:
    pod = _pod_config().metadata
    assert state.sandbox_name(pod) == "web_prod_u1_2"
    assert state.container_name(api.ContainerMetadata(name="app", attempt=1), pod) == "app_web_prod_u1_1"


def test_pod_round_trips_through_its_extension() -> None:
    pod = state.PodSandbox(
        id="a" * 64,
        name="web_prod_u1_2",
        config=_pod_config(),
        runtime_handler="fast",
        sandboxer="podsandbox",
        created_at=123,
        netns_path="/run/x/netns/cni-1",
        ip="10.1.0.5",
        additional_ips=["fd00::5"],
        state=api.SANDBOX_READY,
        pid=99,
    )
    back = state.PodSandbox.from_json(pod.to_json())
    assert back.config == pod.config
    assert (back.id, back.runtime_handler, back.netns_path, back.ip, back.additional_ips) == (
        pod.id,
        "fast",
        pod.netns_path,
        "10.1.0.5",
        ["fd00::5"],
    )
    assert back.state == api.SANDBOX_NOTREADY  # live state is never taken from disk: recovery asks the controller


def test_container_round_trips_and_status_is_stored_apart(tmp_path: Path) -> None:
    config = api.ContainerConfig(metadata=api.ContainerMetadata(name="app"), image=api.ImageSpec(image="busybox"))
    ctr = state.CRIContainer(
        id="b" * 64,
        name="app_web_prod_u1_0",
        sandbox_id="a" * 64,
        config=config,
        image_id="sha256:" + "c" * 64,
        image_ref="docker.io/library/busybox:latest",
        snapshotter="overlayfs",
        log_path="/var/log/pods/x/app/0.log",
        created_at=5,
        user=(1000, 1000, (10, 20)),
    )
    back = state.CRIContainer.from_json(ctr.to_json())
    assert back.config == config
    assert back.user == (1000, 1000, (10, 20))
    files = state.StatusFiles(tmp_path)
    assert files.load(ctr.id) == state.ContainerStatus()
    files.save(ctr.id, state.ContainerStatus(state=api.CONTAINER_EXITED, exit_code=3, reason="Error"))
    loaded = files.load(ctr.id)
    assert (loaded.state, loaded.exit_code, loaded.reason) == (api.CONTAINER_EXITED, 3, "Error")
    assert not list(files.path(ctr.id).parent.glob(".status-*"))  # no temp file left
    files.path(ctr.id).write_text("{not json")
    assert files.load(ctr.id) == state.ContainerStatus()  # unreadable: start from scratch, never crash
    files.remove(ctr.id)
    assert not files.path(ctr.id).parent.exists()


def test_name_index_refuses_a_second_holder() -> None:
    index = state.NameIndex("sandbox")
    index.reserve("n", "id1")
    index.reserve("n", "id1")  # the same holder again is fine
    with pytest.raises(AlreadyExists, match="reserved for 'id1'"):
        index.reserve("n", "id2")
    index.release("n")
    index.reserve("n", "id2")


def test_find_by_id_or_unique_prefix() -> None:
    items = {"abc123": 1, "abd456": 2}
    assert state.find(items, "container", "abc123") == 1
    assert state.find(items, "container", "abd") == 2
    with pytest.raises(NotFound):
        state.find(items, "container", "ab")  # ambiguous
    with pytest.raises(NotFound):
        state.find(items, "container", "zz")
    with pytest.raises(NotFound):
        state.find(items, "container", "")


def test_label_selector() -> None:
    assert state.matches_selector({"a": "1", "b": "2"}, {"a": "1"})
    assert not state.matches_selector({"a": "1"}, {"a": "2"})
    assert state.matches_selector({}, {})
