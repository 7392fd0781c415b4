"""Read ``config.toml`` with its ``imports`` and decode it into :class:`Config`."""

from __future__ import annotations

import glob
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycontainerd.config.decode import decode_dataclass
from pycontainerd.config.model import ACCEPTED_TOP_LEVEL, SUPPORTED_VERSIONS, Config, ConfigError

VERSION_1_HELP = (
    "config version 1 is not supported (it was removed in containerd 2.0): set `version = 2` at the top "
    "of the file and name plugin sections by their full URI, e.g. [plugins.cri] becomes "
    '[plugins."io.containerd.grpc.v1.cri"] and [plugins.linux] becomes '
    '[plugins."io.containerd.runtime.v1.linux"]; '
    "`pycontainerd config migrate -c FILE` converts a file"
)


@dataclass(slots=True)
class Loaded:
    """A decoded config, the files it came from, and warnings to log once logging is set up."""

    config: Config
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sources: dict[tuple[str, ...], str] = field(default_factory=dict)
    """Where each key set by a file or a flag came from (key path -> file path or "flag")."""


def _record(
    sources: dict[tuple[str, ...], str], table: dict[str, Any], origin: str, prefix: tuple[str, ...] = ()
) -> None:
    """Note ``origin`` for every leaf of ``table`` (a later origin overrides an earlier one)."""
    for key, value in table.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            _record(sources, value, origin, path)
        else:
            sources[path] = origin


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid TOML: not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc


def _check_version(table: dict[str, Any], path: Path) -> None:
    version = table.get("version", 2)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(f"{path}: version: expected an integer, got {version!r}")
    if version < 2:
        raise ConfigError(f"{path}: {VERSION_1_HELP}")
    if version not in SUPPORTED_VERSIONS:
        raise ConfigError(f"{path}: config version {version} is not supported (supported: 2, 3)")


def _as_version_2(table: dict[str, Any], path: Path, notes: list[str]) -> dict[str, Any]:
    """A version 3 (containerd 2.x) file read in the version 2 layout."""
    if table.get("version") != 3:
        return table
    from pycontainerd.config.migrate import migrate

    migrated, moved = migrate(table)
    notes.extend(f"{path} (config version 3): {note}" for note in moved)
    return migrated


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    """Merge ``other`` over ``into``: tables merge key by key, lists append new items, else override."""
    for key, value in other.items():
        current = into.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            _merge(current, value)
        elif isinstance(current, list) and isinstance(value, list) and key != "imports":
            current.extend(v for v in value if v not in current)
        else:
            into[key] = value


def _expand_imports(patterns: list[Any], base: Path) -> list[Path]:
    paths: list[Path] = []
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise ConfigError(f"imports: expected strings, got {pattern!r}")
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        matches = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
        paths.extend(Path(m) for m in matches)
    return paths


def load(path: Path | None, *, overrides: dict[str, Any] | None = None) -> Loaded:
    """Load ``path`` (None: defaults only), its imports, then ``overrides``.

    ``overrides`` is a partial table such as ``{"grpc": {"address": ...}, "root": ...}``,
    applied last, as containerd applies its command-line flags.
    """
    merged: dict[str, Any] = {}
    notes: list[str] = []
    files: list[Path] = []
    sources: dict[tuple[str, ...], str] = {}
    if path is not None:
        table = _read_toml(path)
        _check_version(table, path)
        table = _as_version_2(table, path, notes)
        files.append(path)
        _record(sources, table, str(path))
        merged = table
        for imported in _expand_imports(list(table.get("imports", [])), path.parent):
            if imported in files:
                continue
            sub = _read_toml(imported)
            _check_version(sub, imported)
            sub = _as_version_2(sub, imported, notes)
            files.append(imported)
            sub.pop("imports", None)
            _record(sources, sub, str(imported))
            _merge(merged, sub)
    if overrides:
        _record(sources, overrides, "flag")
        _merge(merged, overrides)

    warnings: list[str] = notes
    for key in ACCEPTED_TOP_LEVEL:
        if key in merged:
            warnings.append(f"config key {key} is accepted but not supported yet; ignored")
            merged.pop(key)
    merged.pop("version", None)
    config = decode_dataclass(Config, merged, "", warnings)
    config.version = 2
    return Loaded(config=config, files=files, warnings=warnings, sources=sources)
