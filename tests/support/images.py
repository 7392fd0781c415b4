"""Deterministic busybox OCI images built from Debian's busybox-static, for tests that need no network.

:func:`build_busybox_oci_tar` writes an OCI image layout tar that ``ctr images import`` names after
``ref`` (the index carries both ``io.containerd.image.name`` and
``org.opencontainers.image.ref.name``, as containerd's own exporter writes them) and that
``ctr run --rm REF t echo hello`` runs. :func:`build_image_layout_dir` writes the same layout as a
directory. The image has one gzip layer: ``bin/busybox`` with symlinks for the common applets,
``etc/passwd``, ``etc/group``, ``tmp/`` (mode 1777) and empty mount points.

Output is deterministic: entries are sorted, every mtime is 0, owners are 0:0, gzip headers carry
no name and mtime 0, and JSON is written with sorted keys and no spaces. The same inputs on the
same machine (same busybox, same zlib) give the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

BUSYBOX = Path("/bin/busybox")
DEFAULT_REF = "docker.io/library/busybox:latest"
APPLETS: tuple[str, ...] = (
    "cat",
    "echo",
    "env",
    "false",
    "grep",
    "head",
    "hostname",
    "id",
    "ls",
    "mkdir",
    "ps",
    "sh",
    "sleep",
    "top",
    "touch",
    "true",
    "wc",
)
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnobody:x:65534:\n"

MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
BASE_DIRS: dict[str, int] = {
    "bin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "proc": 0o755,
    "root": 0o700,
    "sys": 0o755,
    "tmp": 0o1777,
}

_GO_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What :func:`build_busybox_oci_tar` or :func:`build_image_layout_dir` wrote.

    Attributes:
        path: The tar file or layout directory written.
        ref: The image name ``ctr images import`` gives the image.
        arch: The architecture in the image config (OCI/Go naming).
        manifest_digest: Digest of the image manifest (the image's target).
        manifest_size: Size of the manifest in bytes.
        config_digest: Digest of the image config.
        config_size: Size of the config in bytes.
        layer_digest: Digest of the gzip-compressed layer blob.
        layer_size: Size of the compressed layer blob in bytes.
        diff_id: Digest of the uncompressed layer tar (``rootfs.diff_ids[0]``).
        diff_size: Size of the uncompressed layer tar in bytes.
    """

    path: Path
    ref: str
    arch: str
    manifest_digest: str
    manifest_size: int
    config_digest: str
    config_size: int
    layer_digest: str
    layer_size: int
    diff_id: str
    diff_size: int


@dataclass(frozen=True, slots=True)
class _Built:
    info: ImageInfo
    index: bytes
    blobs: dict[str, bytes]  # digest -> content


def go_arch(machine: str | None = None) -> str:
    """Return an architecture in OCI (Go ``GOARCH``) naming.

    Args:
        machine: A ``uname -m`` style name; defaults to this machine's.

    Returns:
        The OCI name, e.g. ``amd64`` for ``x86_64``; unknown names are returned unchanged.
    """
    name = machine if machine is not None else platform.machine()
    return _GO_ARCH.get(name.lower(), name.lower())


def sha256_digest(data: bytes) -> str:
    """Return the ``sha256:<hex>`` digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _ref_name(ref: str) -> str:
    """The ``org.opencontainers.image.ref.name`` for ``ref``: its tag (or digest), as containerd writes it."""
    if "@" in ref:
        return ref.split("@", 1)[1]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def _tar_info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = link
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _clean_path(path: str) -> str:
    pure = PurePosixPath("/" + path.lstrip("/"))
    parts = pure.parts[1:]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"bad path for an extra file: {path!r}")
    return "/".join(parts)


def _layer_entries(busybox: bytes, extra_files: dict[str, bytes]) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Every entry of the layer tar, sorted so that a directory precedes what it holds."""
    dirs = dict(BASE_DIRS)
    files: dict[str, tuple[tarfile.TarInfo, bytes]] = {
        "bin/busybox": (_tar_info("bin/busybox", tarfile.REGTYPE, 0o755, len(busybox)), busybox),
        "etc/passwd": (_tar_info("etc/passwd", tarfile.REGTYPE, 0o644, len(PASSWD)), PASSWD),
        "etc/group": (_tar_info("etc/group", tarfile.REGTYPE, 0o644, len(GROUP)), GROUP),
    }
    for applet in APPLETS:
        name = f"bin/{applet}"
        files[name] = (_tar_info(name, tarfile.SYMTYPE, 0o777, link="busybox"), b"")
    for raw_name, data in extra_files.items():
        name = _clean_path(raw_name)
        if name in dirs:
            raise ValueError(f"extra file {raw_name!r} would replace a directory")
        mode = 0o755 if data.startswith(b"#!") else 0o644
        files[name] = (_tar_info(name, tarfile.REGTYPE, mode, len(data)), data)
        parent = PurePosixPath(name).parent
        while str(parent) != ".":
            if str(parent) in files:
                raise ValueError(f"extra file {raw_name!r} is under a file, {str(parent)!r}")
            dirs.setdefault(str(parent), 0o755)
            parent = parent.parent
    entries = [(_tar_info(d, tarfile.DIRTYPE, mode), b"") for d, mode in dirs.items()]
    entries.extend(files.values())
    entries.sort(key=lambda entry: PurePosixPath(entry[0].name).parts)
    return entries


def _write_tar(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def _build(path: Path, ref: str, arch: str | None, extra_files: dict[str, bytes] | None) -> _Built:
    if not BUSYBOX.is_file():
        raise FileNotFoundError(f"{BUSYBOX} is missing: apt-get install busybox-static")
    arch = arch or go_arch()
    layer_tar = _write_tar(_layer_entries(BUSYBOX.read_bytes(), extra_files or {}))
    layer_gz = gzip.compress(layer_tar, compresslevel=6, mtime=0)
    diff_id = sha256_digest(layer_tar)
    layer = {"mediaType": MEDIA_TYPE_LAYER_GZIP, "digest": sha256_digest(layer_gz), "size": len(layer_gz)}
    config = _json(
        {
            "architecture": arch,
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {"Cmd": ["sh"], "Env": [DEFAULT_PATH], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "tests.support.images"}],
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": sha256_digest(config), "size": len(config)},
            "layers": [layer],
        }
    )
    index = _json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": [
                {
                    "mediaType": MEDIA_TYPE_MANIFEST,
                    "digest": sha256_digest(manifest),
                    "size": len(manifest),
                    "annotations": {ANNOTATION_CONTAINERD_NAME: ref, ANNOTATION_REF_NAME: _ref_name(ref)},
                    "platform": {"architecture": arch, "os": "linux"},
                }
            ],
        }
    )
    info = ImageInfo(
        path=path,
        ref=ref,
        arch=arch,
        manifest_digest=sha256_digest(manifest),
        manifest_size=len(manifest),
        config_digest=sha256_digest(config),
        config_size=len(config),
        layer_digest=sha256_digest(layer_gz),
        layer_size=len(layer_gz),
        diff_id=diff_id,
        diff_size=len(layer_tar),
    )
    blobs = {sha256_digest(blob): blob for blob in (config, manifest, layer_gz)}
    return _Built(info=info, index=index, blobs=dict(sorted(blobs.items())))


def _layout_files(built: _Built) -> list[tuple[str, bytes | None]]:
    """The layout's entries in order: ``None`` content marks a directory."""
    files: list[tuple[str, bytes | None]] = [
        ("blobs", None),
        ("blobs/sha256", None),
        *((f"blobs/sha256/{digest.split(':', 1)[1]}", blob) for digest, blob in built.blobs.items()),
        ("index.json", built.index),
        ("oci-layout", OCI_LAYOUT),
    ]
    return files


def build_busybox_oci_tar(
    dest: Path,
    *,
    ref: str = DEFAULT_REF,
    arch: str | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> ImageInfo:
    """Write a busybox OCI image layout tar to ``dest``.

    Args:
        dest: The tar file to write (replaced if it exists; its directory must exist).
        ref: The image name ``ctr images import`` gives it.
        arch: The config's architecture in OCI naming; defaults to this machine's (``amd64``, ``arm64``...).
        extra_files: More regular files for the layer, path in the rootfs to content. Missing parent
            directories are created (0755); a file whose content starts with ``#!`` gets mode 0755,
            any other 0644. A path that is also a base file (``etc/passwd``) replaces it.

    Returns:
        The digests and sizes of what was written.

    Raises:
        FileNotFoundError: ``/bin/busybox`` (Debian's busybox-static) is not installed.
        ValueError: An extra file's path is empty, has ``..`` or clashes with a directory.
    """
    built = _build(dest, ref, arch, extra_files)
    entries: list[tuple[tarfile.TarInfo, bytes]] = []
    for name, data in _layout_files(built):
        if data is None:
            entries.append((_tar_info(name, tarfile.DIRTYPE, 0o755), b""))
        else:
            entries.append((_tar_info(name, tarfile.REGTYPE, 0o644, len(data)), data))
    dest.write_bytes(_write_tar(entries))
    return built.info


def build_image_layout_dir(
    dest: Path,
    *,
    ref: str = DEFAULT_REF,
    arch: str | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> ImageInfo:
    """Write the same image as :func:`build_busybox_oci_tar` as an OCI image layout directory.

    Args:
        dest: The directory to fill (created if missing; existing blobs of the same digest are rewritten).
        ref: The image name recorded in ``index.json``.
        arch: The config's architecture in OCI naming; defaults to this machine's.
        extra_files: More files for the layer, as for :func:`build_busybox_oci_tar`.

    Returns:
        The digests and sizes of what was written.

    Raises:
        FileNotFoundError: ``/bin/busybox`` is not installed.
        ValueError: An extra file's path is bad.
    """
    built = _build(dest, ref, arch, extra_files)
    dest.mkdir(parents=True, exist_ok=True)
    for name, data in _layout_files(built):
        target = dest / name
        if data is None:
            target.mkdir(exist_ok=True)
        else:
            target.write_bytes(data)
    return built.info
