"""Convert containerd config files of other versions to the version 2 layout pycontainerd reads.

* **Version 1** (containerd 1.x before 1.3's version 2) named plugin sections by their short ID
  (``[plugins.cri]``, ``[plugins.overlayfs]``); version 2 names them by type and ID
  (``[plugins."io.containerd.grpc.v1.cri"]``). The same holds for ``disabled_plugins`` and
  ``required_plugins``.
* **Version 3** (containerd 2.x) split the CRI plugin in three: ``io.containerd.cri.v1.images``
  (snapshotter, sandbox image as ``pinned_images.sandbox``, registry, pull settings),
  ``io.containerd.cri.v1.runtime`` (runtimes, CNI, everything else) and
  ``io.containerd.grpc.v1.cri`` (the streaming server). Version 2 keeps all of it in
  ``io.containerd.grpc.v1.cri``, with the snapshotter under ``containerd``.

:func:`migrate` works on the parsed TOML table; ``pycontainerd config migrate`` prints the
result, and the loader applies it to version 3 files on the fly (so a containerd 2.x config
works unchanged).
"""

from __future__ import annotations

import copy
from typing import Any

from pycontainerd.config.model import ConfigError

CRI = "io.containerd.grpc.v1.cri"
CRI_IMAGES = "io.containerd.cri.v1.images"
CRI_RUNTIME = "io.containerd.cri.v1.runtime"
SHIM_MANAGER = "io.containerd.shim.v1.manager"

# Version-1 plugin IDs and the URIs containerd 1.x registered them under (used when no
# pycontainerd plugin claims the ID, so a file migrates the same on any installation).
V1_PLUGIN_URIS = {
    "cri": CRI,
    "linux": "io.containerd.runtime.v1.linux",
    "task": "io.containerd.runtime.v2.task",
    "scheduler": "io.containerd.gc.v1.scheduler",
    "bolt": "io.containerd.metadata.v1.bolt",
    "opt": "io.containerd.internal.v1.opt",
    "restart": "io.containerd.internal.v1.restart",
    "cgroups": "io.containerd.monitor.v1.cgroups",
    "diff-service": "io.containerd.service.v1.diff-service",
    "walking": "io.containerd.differ.v1.walking",
    "overlayfs": "io.containerd.snapshotter.v1.overlayfs",
    "native": "io.containerd.snapshotter.v1.native",
    "btrfs": "io.containerd.snapshotter.v1.btrfs",
    "devmapper": "io.containerd.snapshotter.v1.devmapper",
    "zfs": "io.containerd.snapshotter.v1.zfs",
    "aufs": "io.containerd.snapshotter.v1.aufs",
    "blockfile": "io.containerd.snapshotter.v1.blockfile",
    "tracing": "io.containerd.internal.v1.tracing",
    "otlp": "io.containerd.tracing.processor.v1.otlp",
}

# Keys of io.containerd.cri.v1.images that version 2 keeps at the top of the CRI section.
_IMAGE_KEYS_TOP = (
    "registry",
    "image_decryption",
    "max_concurrent_downloads",
    "image_pull_progress_timeout",
    "image_pull_with_sync_fs",
    "stats_collect_period",
)
# ... and those it keeps under the CRI section's ``containerd`` table.
_IMAGE_KEYS_CONTAINERD = ("snapshotter", "disable_snapshot_annotations", "discard_unpacked_layers")


def _merge_missing(dst: dict[str, Any], src: dict[str, Any]) -> None:
    """Copy ``src`` into ``dst`` without overriding keys ``dst`` already has (tables merge)."""
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge_missing(dst[key], value)
        elif key not in dst:
            dst[key] = copy.deepcopy(value)


def _from_v1(table: dict[str, Any], known: dict[str, str], notes: list[str]) -> None:
    plugins = table.get("plugins")
    if isinstance(plugins, dict):
        renamed: dict[str, Any] = {}
        for name, section in plugins.items():
            uri = name if "." in name else known.get(name) or V1_PLUGIN_URIS.get(name)
            if uri is None:
                notes.append(f"plugin section [plugins.{name}] kept as is: no plugin with ID {name!r} is known")
                uri = name
            elif uri != name:
                notes.append(f'[plugins.{name}] -> [plugins."{uri}"]')
            renamed[uri] = section
        table["plugins"] = renamed
    for key in ("disabled_plugins", "required_plugins"):
        ids = table.get(key)
        if isinstance(ids, list):
            table[key] = [
                i if not isinstance(i, str) or "." in i else known.get(i) or V1_PLUGIN_URIS.get(i, i) for i in ids
            ]


def _table(value: Any, where: str) -> dict[str, Any]:
    """``value`` when it is a table; ConfigError naming ``where`` otherwise."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table, got {type(value).__name__} {value!r}")
    return value


def _from_v3(table: dict[str, Any], notes: list[str]) -> None:
    plugins = table.get("plugins")
    if not isinstance(plugins, dict):
        return
    images = plugins.pop(CRI_IMAGES, None)
    runtime = plugins.pop(CRI_RUNTIME, None)
    if images is None and runtime is None:
        return
    cri = _table(plugins.setdefault(CRI, {}), f'plugins."{CRI}"')
    if runtime is not None:
        _merge_missing(cri, _table(runtime, f'plugins."{CRI_RUNTIME}"'))
        notes.append(f'[plugins."{CRI_RUNTIME}"] merged into [plugins."{CRI}"]')
    if images is not None:
        images = _table(images, f'plugins."{CRI_IMAGES}"')
        containerd = _table(cri.setdefault("containerd", {}), f'plugins."{CRI}".containerd')
        for key in _IMAGE_KEYS_TOP:
            if key in images:
                cri.setdefault(key, copy.deepcopy(images[key]))
        for key in _IMAGE_KEYS_CONTAINERD:
            if key in images:
                containerd.setdefault(key, images[key])
        pinned = _table(images.get("pinned_images") or {}, f'plugins."{CRI_IMAGES}".pinned_images')
        if pinned.get("sandbox"):
            cri.setdefault("sandbox_image", pinned["sandbox"])
        where = f'plugins."{CRI_IMAGES}".runtime_platform'
        for handler, platform in _table(images.get("runtime_platform") or {}, where).items():
            snapshotter = _table(platform or {}, f"{where}.{handler}").get("snapshotter")
            if snapshotter:
                runtimes = _table(containerd.setdefault("runtimes", {}), f'plugins."{CRI}".containerd.runtimes')
                handler_table = _table(
                    runtimes.setdefault(handler, {}), f'plugins."{CRI}".containerd.runtimes.{handler}'
                )
                handler_table.setdefault("snapshotter", snapshotter)
        moved = set(_IMAGE_KEYS_TOP) | set(_IMAGE_KEYS_CONTAINERD) | {"pinned_images", "runtime_platform"}
        for key in sorted(set(images) - moved):
            notes.append(f'plugins."{CRI_IMAGES}".{key} has no version 2 equivalent; dropped')
        notes.append(f'[plugins."{CRI_IMAGES}"] merged into [plugins."{CRI}"]')


def migrate(table: dict[str, Any], *, known: dict[str, str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """A version-2 copy of a parsed config table, and notes on what moved.

    Args:
        table: The parsed TOML of a config file (``version`` 1, 2 or 3; when absent, 1 if a plugin
            section has a short name, else 2).
        known: Plugin ID -> ``<type>.<id>`` of the plugins this installation has, preferred over the
            built-in table of containerd 1.x IDs when renaming version-1 sections.

    Returns:
        The migrated table (``version = 2``) and human-readable notes.
    """
    out = copy.deepcopy(table)
    notes: list[str] = []
    version = out.get("version") or _guess_version(out)
    if version == 1:
        _from_v1(out, known or {}, notes)
    elif version == 3:
        _from_v3(out, notes)
    out["version"] = 2
    return out, notes


def _guess_version(table: dict[str, Any]) -> int:
    """A file without ``version``: 1 if a plugin section has a short name (``[plugins.cri]``), else 2."""
    plugins = table.get("plugins")
    if isinstance(plugins, dict) and any("." not in name for name in plugins):
        return 1
    return 2


def known_plugin_ids(uris: list[str]) -> dict[str, str]:
    """ID -> URI for the IDs that name exactly one of ``uris`` (``<type>.<id>`` strings)."""
    by_id: dict[str, list[str]] = {}
    for uri in uris:
        by_id.setdefault(uri.rsplit(".", 1)[-1], []).append(uri)
    return {plugin_id: found[0] for plugin_id, found in by_id.items() if len(found) == 1}
