"""Task bundles on disk."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pycontainerd import identifiers
from pycontainerd.core.snapshots import Mount
from pycontainerd.errdefs import AlreadyExists, InvalidArgument
from pycontainerd.runtime.v2.config import PYRUNC_SHIM
from pycontainerd.snapshots import mount as mounting

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pycontainerd.api.containerd.types import mount_pb2

log = logging.getLogger(__name__)
MOUNTINFO = Path("/proc/self/mountinfo")

CONFIG = "config.json"
BOOTSTRAP = "bootstrap.json"
ADDRESS = "address"
SHIM_BINARY = "shim-binary-path"
RUNTIME = "runtime"


@dataclass(frozen=True, slots=True)
class Bundle:
    """One task's bundle directory."""

    id: str
    namespace: str
    path: Path
    work: Path

    @property
    def rootfs(self) -> Path:
        """Where the shim mounts the root filesystem."""
        return self.path / "rootfs"

    @property
    def log(self) -> Path:
        """The FIFO the shim writes its logs to."""
        return self.path / "log"

    def write_bootstrap(self, address: str, protocol: str, version: int, binary: str, runtime: str) -> None:
        """Record how to reach the shim again after a daemon restart (atomically)."""
        data = {"version": version, "address": address, "protocol": protocol}
        for name, text in (
            (BOOTSTRAP, json.dumps(data)),
            (ADDRESS, address),
            (SHIM_BINARY, binary),
            (RUNTIME, runtime),
        ):
            tmp = self.path / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.path / name)

    def read_bootstrap(self) -> tuple[str, str, int] | None:
        """(address, protocol, version) of the shim, or None if it never started."""
        try:
            data = json.loads((self.path / BOOTSTRAP).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return str(data["address"]), str(data.get("protocol", "ttrpc")), int(data.get("version", 2))

    def read(self, name: str) -> str:
        """A small file of the bundle, or "" if absent."""
        try:
            return (self.path / name).read_text().strip()
        except FileNotFoundError:
            return ""

    def unmount(self) -> None:
        """Unmount whatever is mounted in the bundle (the rootfs, normally), deepest first.

        A shim unmounts the rootfs it mounted when it deletes its task; this is for the shims
        that could not (one that died, or whose Delete failed). Busy mounts are detached lazily.

        Raises:
            OSError: If a mount cannot be removed.
        """
        for point in mount_points_under(self.path):
            mounting.unmount_all(point)

    def delete(self) -> None:
        """Unmount what is left in the bundle, then remove it and its work directory.

        The bundle stays if a mount cannot be removed (removing files through it would delete
        the container's root filesystem); the next daemon start finds it and tries again.
        """
        try:
            self.unmount()
        except OSError as exc:
            log.error("bundle %s keeps a mount, not removed: %s", self.path, exc)
            return
        with contextlib.suppress(OSError):
            os.rmdir(self.rootfs)
        shutil.rmtree(self.path, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def mount_points_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (from ``/proc/self/mountinfo``), deepest first."""
    try:
        text = MOUNTINFO.read_text()
    except OSError:
        return []
    top = os.path.realpath(path)
    found: set[str] = set()
    for line in text.splitlines():
        fields = line.split(" ", 5)
        if len(fields) < 5:
            continue
        # The kernel escapes space, tab, newline and backslash in paths as \ooo.
        point = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
        if point == top or point.startswith(top + "/"):
            found.add(point)
    return sorted(found, key=lambda p: (-p.count("/"), p))


def new_bundle(state_root: Path, root: Path, namespace: str, task_id: str, spec: bytes | None) -> Bundle:
    """Create a bundle for a new task; AlreadyExists if one is there."""
    try:
        identifiers.validate(task_id)
    except InvalidArgument as exc:
        raise InvalidArgument(f"invalid task id {task_id}: {exc.message}") from exc
    path = state_root / namespace / task_id
    work = root / namespace / task_id
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError as exc:
        raise AlreadyExists(f"bundle {path}") from exc
    bundle = Bundle(task_id, namespace, path, work)
    try:
        _share_with_userns(path, spec)
        bundle.rootfs.mkdir(mode=0o711)
        work.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(mode=0o711)
        os.symlink(work, path / "work")
        if spec is not None:
            (path / CONFIG).write_bytes(spec)
        os.mkfifo(bundle.log, 0o700)
    except BaseException:
        bundle.delete()
        raise
    return bundle


def _share_with_userns(path: Path, spec: bytes | None) -> None:
    """Let a container with a user namespace reach its rootfs: the bundle (0700) gets the
    mapped root's group and mode 0710, as containerd's ``prepareBundleDirectoryPermissions``."""
    if not spec:
        return
    try:
        linux = json.loads(spec).get("linux") or {}
        gid = next((int(m["hostID"]) for m in linux.get("gidMappings") or [] if int(m["containerID"]) == 0), 0)
    except (ValueError, TypeError, KeyError, AttributeError):
        return  # not an OCI spec we can read: the runtime will say what is wrong with it
    if gid:
        os.chown(path, -1, gid)
        os.chmod(path, 0o710)


def premount_idmapped(bundle: Bundle, shim_binary: str, rootfs: Sequence[mount_pb2.Mount]) -> bool:
    """Mount ``rootfs`` on the bundle's rootfs here when it asks for ID-mapped mounts
    (``uidmap=``/``gidmap=``) and the shim is not ours: shims of containerd 1.6 hand those
    options to the kernel, which refuses them. The shim is then given no rootfs mounts and
    uses the directory as it is; removing the bundle unmounts it. Returns whether it mounted.
    """
    if os.path.basename(shim_binary) == PYRUNC_SHIM:
        return False
    if all(mounting.split_idmap_options(m.options)[2] == tuple(m.options) for m in rootfs):
        return False
    mounting.mount_all([Mount(m.type, m.source, tuple(m.options), m.target) for m in rootfs], bundle.rootfs)
    return True


def load_bundles(state_root: Path, root: Path) -> list[Bundle]:
    """Every bundle left under ``state_root`` (after a daemon restart)."""
    out: list[Bundle] = []
    if not state_root.is_dir():
        return out
    for ns_dir in sorted(state_root.iterdir()):
        if not ns_dir.is_dir():
            continue
        for task_dir in sorted(ns_dir.iterdir()):
            if task_dir.is_dir():
                out.append(Bundle(task_dir.name, ns_dir.name, task_dir, root / ns_dir.name / task_dir.name))
    return out
