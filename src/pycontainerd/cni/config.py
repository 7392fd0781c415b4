"""Network configurations: parse ``.conf``/``.conflist`` files and pick the ones to attach.

Loading follows go-cni's ``WithDefaultConf`` (on top of libcni's parser), which is what
containerd's CRI does:

- the conf dir's ``*.conf``, ``*.conflist`` and ``*.json`` files (not sub-directories) are
  read in lexical order of their paths; a missing or empty directory means "not initialized";
- ``*.conflist`` is a network (``name``, ``cniVersion``, ``plugins``); the others hold one
  plugin config, wrapped into a one-plugin network;
- the first ``max_conf_num`` of them become the networks (0 means all of them), attached as
  ``eth0``, ``eth1``...; a broken file among those is an error that names it, not a skip;
- the CRI always puts a loopback network first (go-cni's ``WithLoNetwork``), so a pod needs
  at least two networks.

We also check what libcni leaves to the plugins: the network name's syntax, that each plugin
has a ``type``, and the ``cniVersion`` (0.3.0 up to 1.1.0; with CNI 1.1's ``cniVersions``
list the highest supported entry wins). A conflist without ``loadOnlyInlinedPlugins`` also
takes the ``*.conf`` plugin files of ``<conf dir>/<network name>/`` (CNI 1.1).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycontainerd.cni.errors import InvalidConfig, NotInitialized, PluginNotFound

DEFAULT_CONF_DIR = "/etc/cni/net.d"
# containerd's default is /opt/cni/bin; Debian's containernetworking-plugins installs to /usr/lib/cni.
DEFAULT_BIN_DIRS: tuple[str, ...] = ("/opt/cni/bin", "/usr/lib/cni")
DEFAULT_MAX_CONF_NUM = 1
DEFAULT_IF_PREFIX = "eth"
CONF_EXTENSIONS = (".conf", ".conflist", ".json")
SUPPORTED_VERSIONS: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LOOPBACK_NETWORK = "cni-loopback"
LOOPBACK_IFNAME = "lo"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def version_key(version: str) -> tuple[int, ...]:
    """``"0.4.0"`` -> ``(0, 4, 0)``, for comparing CNI versions.

    Raises:
        ValueError: not a dotted version.
    """
    parts = version.split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"invalid CNI version {version!r}")
    return tuple(int(p) for p in parts) + (0,) * (3 - len(parts))


def at_least(version: str, minimum: str) -> bool:
    """Whether ``version`` >= ``minimum``."""
    return version_key(version) >= version_key(minimum)


@dataclass(frozen=True, slots=True)
class PluginConf:
    """One plugin of a network, as written in the config.

    Attributes:
        type: the plugin binary's name.
        conf: the plugin's JSON object, unchanged (treat as read-only; invocation copies it).
        capabilities: the capability names it declares ``true`` (``portMappings``, ...).
    """

    type: str
    conf: dict[str, Any]
    capabilities: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class NetworkConfList:
    """A network: a chain of plugins run in order on ADD, in reverse on DEL.

    Attributes:
        name: the network name (also the ``name`` every plugin receives).
        cni_version: the protocol version used for every plugin of the chain.
        plugins: the chain.
        disable_check: CHECK must not be run for this network.
        disable_gc: GC must not be run for this network.
        source: the file it came from ("" for built-in networks).
        raw: the bytes it was parsed from (cached with a result so DEL can use them later).
    """

    name: str
    cni_version: str
    plugins: tuple[PluginConf, ...]
    disable_check: bool = False
    disable_gc: bool = False
    source: str = ""
    raw: bytes = field(default=b"", repr=False)

    @property
    def plugin_types(self) -> tuple[str, ...]:
        """The ``type`` of every plugin, in chain order."""
        return tuple(p.type for p in self.plugins)


def _fail(source: str, message: str) -> InvalidConfig:
    where = f" in {source}" if source else ""
    return InvalidConfig(f"{message}{where}: invalid cni config")


def _bool(raw: dict[str, Any], key: str, source: str) -> bool:
    value = raw.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _fail(source, f"invalid value {value!r} for {key}")


def _pick_version(raw: dict[str, Any], source: str) -> str:
    """The protocol version to use: ``cniVersion``, or the highest supported of ``cniVersions``."""
    declared = raw.get("cniVersion", "")
    if not isinstance(declared, str):
        raise _fail(source, f"invalid cniVersion type {type(declared).__name__}")
    candidates = [declared] if declared else []
    listed = raw.get("cniVersions")
    if listed is not None:
        if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
            raise _fail(source, "cniVersions must be a list of strings")
        candidates += listed
    usable = [v for v in candidates if v in SUPPORTED_VERSIONS]
    if not usable:
        if not candidates:
            raise _fail(source, "no cniVersion")
        raise _fail(
            source, f"unsupported cniVersion {', '.join(candidates)} (supported: {', '.join(SUPPORTED_VERSIONS)})"
        )
    return max(usable, key=version_key)


def _plugin(raw: Any, source: str, index: int | None = None) -> PluginConf:
    where = "" if index is None else f"plugin {index}: "
    if not isinstance(raw, dict):
        raise _fail(source, f"{where}plugin config must be a JSON object")
    kind = raw.get("type", "")
    if not isinstance(kind, str) or not kind:
        raise _fail(source, f"{where}network type not found")
    if "/" in kind or kind in (".", ".."):
        raise _fail(source, f"{where}invalid plugin type {kind!r}")
    caps = raw.get("capabilities", {})
    if not isinstance(caps, dict):
        raise _fail(source, f"{where}capabilities must be a JSON object")
    return PluginConf(kind, raw, frozenset(k for k, v in caps.items() if v is True))


def _json_object(data: bytes, source: str) -> dict[str, Any]:
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(source, f"error parsing configuration: {exc}") from None
    if not isinstance(raw, dict):
        raise _fail(source, "error parsing configuration: not a JSON object")
    return raw


def _name(raw: dict[str, Any], source: str) -> str:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(source, "error parsing configuration: no name")
    if not _NAME.match(name):
        raise _fail(source, f"invalid network name {name!r}")
    return name


def parse_conflist(data: bytes, source: str = "", extra_plugins: tuple[PluginConf, ...] = ()) -> NetworkConfList:
    """Parse a network config list (the ``.conflist`` format).

    Args:
        data: the file's bytes.
        source: where they came from, for error messages.
        extra_plugins: plugins aggregated from elsewhere, appended to the inline ones.

    Raises:
        InvalidConfig: malformed JSON, no name, no plugins, a plugin without type, or an
            unsupported version.
    """
    raw = _json_object(data, source)
    name = _name(raw, source)
    version = _pick_version(raw, source)
    inline = raw.get("plugins")
    if inline is None:
        inline = []
    elif not isinstance(inline, list) or not inline:
        raise _fail(source, "error parsing configuration list: no plugins in list")
    plugins = tuple(_plugin(p, source, i) for i, p in enumerate(inline)) + extra_plugins
    if not plugins:
        raise _fail(source, f"CNI config list {name!r} has no networks")
    return NetworkConfList(
        name=name,
        cni_version=version,
        plugins=plugins,
        disable_check=_bool(raw, "disableCheck", source),
        disable_gc=_bool(raw, "disableGC", source),
        source=source,
        raw=data,
    )


def parse_conf(data: bytes, source: str = "") -> NetworkConfList:
    """Parse a single-plugin config (``.conf``/``.json``) and wrap it into a one-plugin network.

    Raises:
        InvalidConfig: as :func:`parse_conflist`.
    """
    raw = _json_object(data, source)
    plugin = _plugin(raw, source)
    wrapped = {"name": _name(raw, source), "cniVersion": raw.get("cniVersion", ""), "plugins": [raw]}
    if "cniVersions" in raw:
        wrapped["cniVersions"] = raw["cniVersions"]
    result = parse_conflist(json.dumps(wrapped).encode(), source)
    return NetworkConfList(result.name, result.cni_version, (plugin,), source=source, raw=result.raw)


def conf_files(conf_dir: str | os.PathLike[str]) -> list[str]:
    """The config files of a directory in load order; none if it does not exist."""
    try:
        entries = list(os.scandir(conf_dir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(e.path for e in entries if os.path.splitext(e.name)[1] in CONF_EXTENSIONS and not e.is_dir())


def _aggregated(conf_dir: str, name: str) -> tuple[PluginConf, ...]:
    """Plugin configs from ``<conf_dir>/<name>/*.conf`` (CNI 1.1), in lexical order."""
    found: list[PluginConf] = []
    for path in conf_files(os.path.join(conf_dir, name)):
        if path.endswith(".conf"):
            found.append(_plugin(_json_object(Path(path).read_bytes(), path), path))
    return tuple(found)


def load_file(path: str | os.PathLike[str]) -> NetworkConfList:
    """Load one config file by its extension (``.conflist`` is a list, anything else one plugin).

    Raises:
        InvalidConfig: unreadable or invalid; the message names the file.
    """
    source = os.fspath(path)
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        raise _fail(source, f"error reading config: {exc.strerror}") from None
    if not source.endswith(".conflist"):
        return parse_conf(data, source)
    raw = _json_object(data, source)
    extra: tuple[PluginConf, ...] = ()
    if not _bool(raw, "loadOnlyInlinedPlugins", source) and isinstance(raw.get("name"), str) and raw["name"]:
        extra = _aggregated(os.path.dirname(source), raw["name"])
    return parse_conflist(data, source, extra)


def load_dir(conf_dir: str | os.PathLike[str], max_conf_num: int = DEFAULT_MAX_CONF_NUM) -> list[NetworkConfList]:
    """The networks of a conf dir, like go-cni's ``WithDefaultConf``.

    Args:
        conf_dir: the directory.
        max_conf_num: how many files to use; 0 or less means all.

    Raises:
        NotInitialized: no config file at all.
        InvalidConfig: one of the files to use is broken (the message names it).
    """
    files = conf_files(conf_dir)
    if not files:
        raise NotInitialized(f"no network config found in {os.fspath(conf_dir)}: cni plugin not initialized")
    chosen = files if max_conf_num <= 0 else files[:max_conf_num]
    return [load_file(path) for path in chosen]


def loopback_network() -> NetworkConfList:
    """The network that brings ``lo`` up, attached before the others (go-cni's ``WithLoNetwork``).

    go-cni writes it as 0.3.1; we use 0.4.0, which every loopback plugin since 2019 accepts
    and which allows CHECK on it.
    """
    data = json.dumps({"cniVersion": "0.4.0", "name": LOOPBACK_NETWORK, "plugins": [{"type": "loopback"}]}).encode()
    return parse_conflist(data)


def ifname(index: int, prefix: str = DEFAULT_IF_PREFIX) -> str:
    """The interface name of the ``index``-th network: ``eth0``, ``eth1``..."""
    return f"{prefix}{index}"


def find_plugin(plugin_type: str, bin_dirs: tuple[str, ...] | list[str]) -> str:
    """The path of a plugin binary: the first executable regular file ``<dir>/<type>``.

    Raises:
        PluginNotFound: in none of ``bin_dirs`` (the message lists them).
    """
    if not plugin_type or "/" in plugin_type:
        raise PluginNotFound(f"invalid plugin name {plugin_type!r}")
    for directory in bin_dirs:
        candidate = os.path.join(directory, plugin_type)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise PluginNotFound(f"failed to find plugin {plugin_type!r} in path {list(bin_dirs)}")
