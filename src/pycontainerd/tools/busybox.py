"""Build a busybox OCI image layout tar from Debian's busybox-static, with no network.

``python -m pycontainerd.tools.busybox OUT.tar [--ref NAME] [--extra-layers N --files-per-layer M]``

The result imports with ``ctr images import OUT.tar`` (the index carries both
``io.containerd.image.name`` and ``org.opencontainers.image.ref.name``) and runs with
``ctr run --rm NAME t echo hi``. Output is deterministic: same inputs, same digests. Extra
layers of generated files make bigger images for benchmarks.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import platform
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

BUSYBOX = Path("/bin/busybox")
APPLETS = (
    "sh",
    "ls",
    "cat",
    "echo",
    "sleep",
    "true",
    "false",
    "id",
    "env",
    "hostname",
    "mkdir",
    "touch",
    "ps",
    "top",
    "wc",
    "head",
    "grep",
    "kill",
    "rm",
    "cp",
    "mv",
    "date",
    "uname",
    "yes",
    "seq",
    "sync",
    "nc",
    "readlink",
    "httpd",
    "stat",
)
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DEFAULT_REF = "docker.io/library/busybox:latest"


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What was built."""

    path: Path
    ref: str
    manifest_digest: str
    config_digest: str
    layer_digests: tuple[str, ...]
    diff_ids: tuple[str, ...]


def go_arch() -> str:
    """The machine's architecture in OCI (Go) naming."""
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _add(
    tf: tarfile.TarFile,
    name: str,
    data: bytes | None = None,
    *,
    mode: int = 0o644,
    kind: bytes = tarfile.REGTYPE,
    link: str = "",
) -> None:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.uid, info.gid, info.type = mode, 0, 0, 0, kind
    info.linkname = link
    if data is not None:
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    else:
        tf.addfile(info)


def _layer(build: Callable[[tarfile.TarFile], None]) -> tuple[bytes, bytes]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        build(tf)
    plain = raw.getvalue()
    return plain, gzip.compress(plain, compresslevel=6, mtime=0)


def _base(tf: tarfile.TarFile) -> None:
    for d in ("bin", "etc", "root", "tmp", "proc", "sys", "dev"):
        _add(tf, d, mode=0o1777 if d == "tmp" else 0o755, kind=tarfile.DIRTYPE)
    _add(tf, "bin/busybox", BUSYBOX.read_bytes(), mode=0o755)
    for applet in APPLETS:
        _add(tf, f"bin/{applet}", kind=tarfile.SYMTYPE, link="busybox")
    _add(tf, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    _add(tf, "etc/group", b"root:x:0:\nnobody:x:65534:\n")


def _generated(index: int, files: int, file_bytes: int = 0) -> Callable[[tarfile.TarFile], None]:
    def build(tf: tarfile.TarFile) -> None:
        top = f"data/layer{index}"
        _add(tf, "data", mode=0o755, kind=tarfile.DIRTYPE)
        _add(tf, top, mode=0o755, kind=tarfile.DIRTYPE)
        for n in range(files):
            if n % 500 == 0:
                _add(tf, f"{top}/d{n // 500}", mode=0o755, kind=tarfile.DIRTYPE)
            seed = hashlib.sha256(f"{index}/{n}".encode()).digest()
            size = file_bytes or 32 * (1 + n % 64)
            _add(tf, f"{top}/d{n // 500}/f{n}", (seed * (size // 32 + 1))[:size])

    return build


def build_image(
    dest: Path,
    *,
    ref: str = DEFAULT_REF,
    arch: str | None = None,
    extra_layers: int = 0,
    files_per_layer: int = 1000,
    file_bytes: int = 0,
) -> ImageInfo:
    """Write the image layout tar to ``dest`` (``file_bytes``: size of each generated file, 0 varies)."""
    layers = [_layer(_base)] + [_layer(_generated(i, files_per_layer, file_bytes)) for i in range(extra_layers)]
    diff_ids = [_sha(plain) for plain, _ in layers]
    config = json.dumps(
        {
            "architecture": arch or go_arch(),
            "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "pycontainerd.tools.busybox"} for _ in layers],
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": _sha(config), "size": len(config)},
            "layers": [{"mediaType": LAYER, "digest": _sha(gz), "size": len(gz)} for _, gz in layers],
        },
        sort_keys=True,
    ).encode()
    tag = ref.rsplit(":", 1)[-1] if ":" in ref.rsplit("/", 1)[-1] else "latest"
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": MANIFEST,
                    "digest": _sha(manifest),
                    "size": len(manifest),
                    "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": tag},
                }
            ],
        },
        sort_keys=True,
    ).encode()
    blobs = [config, manifest, *(gz for _, gz in layers)]
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        _add(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(tf, "index.json", index)
        for blob in sorted(set(blobs), key=_sha):
            _add(tf, "blobs/sha256/" + _sha(blob).split(":")[1], blob)
    return ImageInfo(dest, ref, _sha(manifest), _sha(config), tuple(_sha(gz) for _, gz in layers), tuple(diff_ids))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m pycontainerd.tools.busybox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dest", type=Path, help="the .tar to write")
    parser.add_argument("--ref", default=DEFAULT_REF, help=f"image name (default {DEFAULT_REF})")
    parser.add_argument("--arch", default=None, help="architecture (default: this machine's)")
    parser.add_argument("--extra-layers", type=int, default=0, help="layers of generated files to add")
    parser.add_argument("--files-per-layer", type=int, default=1000, help="files in each extra layer")
    parser.add_argument("--file-bytes", type=int, default=0, help="size of each generated file (0: 32 B to 2 KiB)")
    args = parser.parse_args(argv)
    if not BUSYBOX.exists():
        print("busybox-static is not installed: apt-get install busybox-static", file=sys.stderr)
        return 1
    info = build_image(
        args.dest,
        ref=args.ref,
        arch=args.arch,
        extra_layers=args.extra_layers,
        files_per_layer=args.files_per_layer,
        file_bytes=args.file_bytes,
    )
    print(f"{info.ref} {info.manifest_digest} ({len(info.layer_digests)} layers) -> {info.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
