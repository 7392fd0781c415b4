"""containerd's CRI annotations and runtime pass-through patterns."""

from __future__ import annotations

import pytest

from pycontainerd.cri.spec.cri_annotations import matches, passthrough
from tests.unit.cri.spec.helpers import build, container_config, options, sandbox_config


def test_container_annotations() -> None:
    assert build()["annotations"] == {
        "io.kubernetes.cri.sandbox-id": "sandbox-id",
        "io.kubernetes.cri.sandbox-namespace": "test-sandbox-ns",
        "io.kubernetes.cri.sandbox-uid": "test-sandbox-uid",
        "io.kubernetes.cri.sandbox-name": "test-sandbox-name",
        "io.kubernetes.cri.container-name": "test-name",
        "io.kubernetes.cri.image-name": "docker.io/library/busybox:latest",
        "io.kubernetes.cri.container-type": "container",
    }


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        # containerd's pass-through tables (path.Match semantics).
        ("c", "c", True),
        ("*", "c", True),
        ("*", "io.kubernetes.cri/x", False),  # * stops at "/"
        ("*/*", "a/b", True),
        ("t.?", "t.2", True),
        ("t.[0-9]", "t.4", True),
        ("t.[^0-9]", "t.a", True),
        ("t.[^0-9]", "t.4", False),
        ("t.[", "t.[", False),  # a bad pattern matches nothing
        ("com.example.\\*", "com.example.*", True),
        ("c", "cc", False),
    ],
)
def test_patterns(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


def test_passthrough_into_container_specs() -> None:
    config, pod = container_config(), sandbox_config()
    pod.annotations.update({"pod.a": "1", "pod.b": "2"})
    config.annotations.update({"ctr.a": "3", "ctr.b": "4"})
    spec = build(config, pod, opts=options(pod_annotations=("pod.a",), container_annotations=("ctr.*",)))
    assert spec["annotations"].items() >= {"pod.a": "1", "ctr.a": "3", "ctr.b": "4"}.items()
    assert "pod.b" not in spec["annotations"] and "c" not in spec["annotations"]
    assert passthrough({"x": "1"}, ()) == {}


def test_user_specified_image_name_wins() -> None:
    config = container_config()
    config.image.user_specified_image = "busybox:1.36"
    assert build(config)["annotations"]["io.kubernetes.cri.image-name"] == "busybox:1.36"
