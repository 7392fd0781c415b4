"""Reading an image config document."""

from __future__ import annotations

import pytest

from pycontainerd.cri.spec import ImageConfig
from pycontainerd.errdefs import InvalidArgument


def test_from_full_document_or_config_object() -> None:
    inner = {
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo hi"],
        "Env": ["PATH=/bin"],
        "WorkingDir": "/w",
        "User": "app:app",
        "StopSignal": "SIGQUIT",
        "Labels": {"a": "b"},
        "Volumes": {"/data": {}, "/cache": {}},
    }
    expected = ImageConfig(
        entrypoint=("/bin/sh", "-c"),
        cmd=("echo hi",),
        env=("PATH=/bin",),
        working_dir="/w",
        user="app:app",
        stop_signal="SIGQUIT",
        labels={"a": "b"},
        volumes=("/data", "/cache"),
    )
    assert ImageConfig.from_json({"architecture": "amd64", "config": inner}) == expected
    assert ImageConfig.from_json(inner) == expected


def test_nulls_and_missing_fields() -> None:
    assert ImageConfig.from_json({"config": {"Entrypoint": None, "Labels": None}}) == ImageConfig()
    assert ImageConfig.from_json({"config": None}) == ImageConfig()
    assert ImageConfig.from_json({}) == ImageConfig()


@pytest.mark.parametrize("doc", [{"Cmd": "sh"}, {"Env": [1]}, {"User": 0}, {"Labels": []}, {"config": []}])
def test_wrong_types(doc: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        ImageConfig.from_json(doc)
