"""From an OCI runtime spec to what a wasm runner needs (no I/O beyond looking at paths).

The spec of a wasm container is an ordinary one (``ctr run`` and the CRI write it as for runc);
this module keeps what WASI can express:

* ``process.args`` become the module's argv; ``args[0]`` also names the module: a path inside
  the rootfs (absolute, or relative to ``process.cwd``, or found on the spec's ``PATH``), with
  an optional ``#function`` suffix naming the export to call instead of ``_start``.
* ``process.env`` becomes the module's environment.
* The rootfs is preopened as ``/`` (read-only when ``root.readonly``); every bind mount of a
  host directory is preopened at its destination (read-only with ``ro``). Other mounts
  (proc, sysfs, tmpfs, devpts...) and bind-mounted files mean nothing to WASI and are left out.
* ``linux.resources.memory.limit`` caps the module's linear memory.
* A CRI pod sandbox (``io.kubernetes.cri.container-type=sandbox``) runs no module: a
  placeholder process holds its place.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from typing import Any

from pycontainerd.errdefs import InvalidArgument, NotFound

CONTAINER_TYPE = "io.kubernetes.cri.container-type"
MAX_SYMLINKS = 40


@dataclass(frozen=True, slots=True)
class Preopen:
    """A host directory the module sees at ``guest``."""

    host: str
    guest: str
    writable: bool = True


@dataclass(frozen=True, slots=True)
class RunPlan:
    """Everything a runner needs to start one container's module.

    Attributes:
        container_id: The task's ID.
        rootfs: The host path of the container's root filesystem.
        args: The module's argv (``args[0]`` without its ``#function`` suffix).
        env: The module's environment, as (name, value) pairs.
        preopens: Directories the module may use, the rootfs (``/``) first.
        entry: The exported function to call.
        module_path: The module's host path when it is a file in the rootfs; "" means the
            module comes from the image's wasm layers.
        memory_limit: Bytes of linear memory allowed (0: no limit).
        placeholder: A pod sandbox: hold the place, run nothing.
    """

    container_id: str
    rootfs: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    preopens: tuple[Preopen, ...] = ()
    entry: str = "_start"
    module_path: str = ""
    memory_limit: int = 0
    placeholder: bool = False


def resolve_in_root(root: str, path: str) -> str:
    """The host path of ``path`` inside ``root``, symlinks followed as if ``root`` were ``/``.

    Nothing resolves outside ``root`` (``..`` stops at it, absolute link targets restart at
    it), so an image cannot make the shim read a host file. Raises NotFound when a component
    is missing.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        host = os.path.join(root, *resolved, part)
        try:
            target = os.readlink(host)
        except FileNotFoundError:
            raise NotFound(f"{path}: no such file in the container's rootfs") from None
        except OSError:  # not a link (EINVAL), or a directory entry we may still traverse
            resolved.append(part)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise InvalidArgument(f"{path}: too many levels of symbolic links")
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return os.path.join(root, *resolved)


def find_module(rootfs: str, arg0: str, cwd: str = "/", path_env: str = "") -> str:
    """The host path of the module ``arg0`` names in ``rootfs``; "" when there is no such file.

    An absolute ``arg0`` is looked up as is, one with a slash relative to ``cwd``, a bare name
    in ``cwd`` and then along ``path_env`` (the spec's ``PATH``).
    """
    if not arg0:
        return ""
    if arg0.startswith("/"):
        candidates = [arg0]
    elif "/" in arg0:
        candidates = [posixpath.join(cwd or "/", arg0)]
    else:
        dirs = [cwd or "/", *(d for d in path_env.split(":") if d.startswith("/"))]
        candidates = [posixpath.join(d, arg0) for d in dirs]
    for candidate in candidates:
        try:
            host = resolve_in_root(rootfs, candidate)
        except (NotFound, InvalidArgument):
            continue
        if os.path.isfile(host):
            return host
    return ""


def _env_pairs(env: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for entry in env:
        name, _, value = entry.partition("=")
        if name:
            pairs.append((name, value))
    return tuple(pairs)


def _bind_preopens(mounts: list[dict[str, Any]]) -> list[Preopen]:
    out: list[Preopen] = []
    for m in mounts:
        options = [str(o) for o in m.get("options") or []]
        is_bind = m.get("type") == "bind" or "bind" in options or "rbind" in options
        source, destination = str(m.get("source") or ""), str(m.get("destination") or "")
        if not is_bind or not source.startswith("/") or not destination.startswith("/") or destination == "/":
            continue
        if os.path.isdir(source):
            out.append(Preopen(source, posixpath.normpath(destination), writable="ro" not in options))
    return out


def _memory_limit(spec: dict[str, Any]) -> int:
    limit = ((spec.get("linux") or {}).get("resources") or {}).get("memory", {}) or {}
    value = limit.get("limit") if isinstance(limit, dict) else None
    return int(value) if isinstance(value, int) and value > 0 else 0


def plan_from_spec(spec: dict[str, Any], rootfs: str, container_id: str) -> RunPlan:
    """The run plan of a container whose spec is ``spec`` and whose rootfs is mounted at ``rootfs``.

    Raises InvalidArgument when the spec has no process arguments.
    """
    annotations = spec.get("annotations") or {}
    process = spec.get("process") or {}
    env = _env_pairs([str(e) for e in process.get("env") or []])
    root = spec.get("root") or {}
    preopens = (
        Preopen(rootfs, "/", writable=not root.get("readonly", False)),
        *_bind_preopens(spec.get("mounts") or []),
    )
    if annotations.get(CONTAINER_TYPE) == "sandbox":
        return RunPlan(container_id, rootfs, placeholder=True)
    args = [str(a) for a in process.get("args") or []]
    if not args:
        raise InvalidArgument(f"container {container_id}: no process arguments (args[0] names the wasm module)")
    module_ref, _, entry = args[0].partition("#")
    args[0] = module_ref
    path_env = next((value for name, value in env if name == "PATH"), "")
    return RunPlan(
        container_id,
        rootfs,
        args=tuple(args),
        env=env,
        preopens=preopens,
        entry=entry or "_start",
        module_path=find_module(rootfs, module_ref, str(process.get("cwd") or "/"), path_env),
        memory_limit=_memory_limit(spec),
    )
