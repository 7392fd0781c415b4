"""The part of an OCI image config that shapes a container: its ``config`` object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pycontainerd.errdefs import InvalidArgument


def _strings(doc: dict[str, Any], key: str) -> tuple[str, ...]:
    value = doc.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"image config: {key} must be a list of strings")
    return tuple(value)


def _string(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"image config: {key} must be a string")
    return value


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """An image's run defaults (OCI image spec ``config``; Docker's capitalised keys).

    Attributes:
        entrypoint: ``Entrypoint``.
        cmd: ``Cmd``.
        env: ``Env`` as ``KEY=value`` strings.
        working_dir: ``WorkingDir``.
        user: ``User`` (``uid``, ``name``, ``uid:gid``, ``name:group``...).
        stop_signal: ``StopSignal``.
        labels: ``Labels``.
        volumes: the paths of ``Volumes``, in the image's order.
    """

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    stop_signal: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    volumes: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, image_config: dict[str, Any]) -> ImageConfig:
        """Read a decoded image config document, or just its ``config`` object.

        Raises:
            InvalidArgument: a field has the wrong JSON type.
        """
        doc = image_config.get("config", image_config)
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise InvalidArgument("image config: config must be an object")
        labels = {} if doc.get("Labels") is None else doc["Labels"]
        volumes = {} if doc.get("Volumes") is None else doc["Volumes"]
        if not isinstance(labels, dict) or not isinstance(volumes, dict):
            raise InvalidArgument("image config: Labels and Volumes must be objects")
        return cls(
            entrypoint=_strings(doc, "Entrypoint"),
            cmd=_strings(doc, "Cmd"),
            env=_strings(doc, "Env"),
            working_dir=_string(doc, "WorkingDir"),
            user=_string(doc, "User"),
            stop_signal=_string(doc, "StopSignal"),
            labels={str(k): str(v) for k, v in labels.items()},
            volumes=tuple(str(k) for k in volumes),
        )
