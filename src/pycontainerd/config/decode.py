"""Typed decoding of TOML tables into config dataclasses.

The rules: a key the dataclass does not have is reported (``warnings`` list) and ignored; a
value of the wrong type raises :class:`ConfigError` naming the full dotted key, e.g.
``plugins."io.containerd.gc.v1.scheduler".pause_threshold: expected a number, got "x"``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, get_args, get_origin

from pycontainerd.config.model import ConfigError

T = TypeVar("T")


def key_join(prefix: str, key: str) -> str:
    """Join a dotted key path, quoting components that contain dots (TOML style)."""
    part = f'"{key}"' if ("." in key or not key) else key
    return f"{prefix}.{part}" if prefix else part


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return f"{type(value).__name__} {value!r}"


def decode_value(tp: Any, value: Any, where: str, warnings: list[str]) -> Any:
    """Check and convert ``value`` to type ``tp``; ``where`` names it in errors."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return decode_value(option, value, where, warnings)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: unexpected value {_describe(value)}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {_describe(value)}")
        return decode_dataclass(tp, value, where, warnings)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_describe(value)}")
        return value
    if origin is list:
        (item_tp,) = get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected an array, got {_describe(value)}")
        return [decode_value(item_tp, v, f"{where}[{i}]", warnings) for i, v in enumerate(value)]
    if origin is dict:
        _, val_tp = get_args(tp) or (str, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {_describe(value)}")
        return {k: decode_value(val_tp, v, key_join(where, k), warnings) for k, v in value.items()}
    raise ConfigError(f"{where}: unsupported config type {tp!r}")


def decode_dataclass(cls: type[T], table: dict[str, Any], where: str, warnings: list[str]) -> T:
    """Build ``cls`` from ``table``; fields missing from the table keep their defaults."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in names:
            warnings.append(f"unknown config key {key_join(where, key)} ignored")
            continue
        kwargs[key] = decode_value(hints[key], value, key_join(where, key), warnings)
    return cls(**kwargs)


def to_table(obj: Any) -> Any:
    """A dataclass (or nested value) as plain TOML-ready data, dropping None values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_table(getattr(obj, f.name)) for f in dataclasses.fields(obj) if getattr(obj, f.name) is not None
        }
    if isinstance(obj, dict):
        return {k: to_table(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [to_table(v) for v in obj]
    return obj
