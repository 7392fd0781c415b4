"""Build WebAssembly OCI images with no network: a WASI demo module and two image layouts.

``python -m pycontainerd.tools.wasm OUT.tar [--layout rootfs|layer] [--ref NAME] [--module M.wasm]``

Without ``--module`` the image carries :data:`DEMO_WAT` (compiled with ``wasmtime.wat2wasm``),
a small WASI program whose first argument picks what it does::

    hello                  (no argument) prints "hello from wasm"
    echo A B...            prints its arguments      stderr A B...   the same on stderr
    env                    prints its environment    exit N          exits with status N
    cat                    copies stdin to stdout    sleep N         sleeps N seconds
    loop                   spins forever             trap            executes `unreachable`
    write DIR FILE TEXT    writes TEXT to FILE in the preopened directory DIR
    read DIR FILE          prints FILE from the preopened directory DIR

Two layouts, both importable with ``ctr images import`` / ``pyctr images import``:

* ``rootfs``: an ordinary filesystem layer holding the module at ``/app.wasm``; the image's
  entrypoint is that path (``process.args[0]`` names the module inside the rootfs).
* ``layer``: the module is a layer of its own, media type ``application/wasm`` (the OCI wasm
  layout runwasi runs), next to a small filesystem layer. The config's ``rootfs.diff_ids`` list
  the filesystem layer only: unpackers skip the module layer (containerd >= 1.6.25, and
  pycontainerd), and the shim reads it from the content store. The filesystem layer is there
  because ``ctr`` 1.6.20 checks an image's rootfs chain before it runs it.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from pycontainerd.tools.busybox import ImageInfo, go_arch

WASM_LAYER = "application/wasm"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYOUTS = ("rootfs", "layer")
DEFAULT_REF = "docker.io/library/wasm-demo:latest"
MODULE_NAME = "app.wasm"

# Memory map: 0..63 scratch (iovec at 0, result words at 8 and 12, byte 63 stays 0: the empty
# string that missing arguments read as), 64..255 string constants, 256..359 poll_oneoff
# subscription and event, 1024 argv pointers, 2048 environ pointers, 4096 argv bytes, 20480
# environ bytes, 65536 the read buffer, 131072 a preopen's name.
DEMO_WAT = r"""
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $fd_prestat_dir_name (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 3)
  (data (i32.const 64) "hello from wasm\n")
  (data (i32.const 96) "echo")
  (data (i32.const 104) "env")
  (data (i32.const 112) "exit")
  (data (i32.const 120) "loop")
  (data (i32.const 128) "cat")
  (data (i32.const 136) "write")
  (data (i32.const 144) "read")
  (data (i32.const 152) "stderr")
  (data (i32.const 160) " \n")
  (data (i32.const 176) "no such preopened directory\n")
  (data (i32.const 208) "open failed\n")
  (data (i32.const 224) "trap")
  (data (i32.const 240) "sleep")
  (global $argc (mut i32) (i32.const 0))

  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))

  ;; 1 when the NUL-terminated string at $s is the $len bytes at $lit
  (func $is (param $s i32) (param $lit i32) (param $len i32) (result i32)
    (local $i i32)
    (if (i32.ne (call $strlen (local.get $s)) (local.get $len)) (then (return (i32.const 0))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $s) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $lit) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))

  ;; argv[$i], or "" past the end
  (func $arg (param $i i32) (result i32)
    (if (i32.ge_u (local.get $i) (global.get $argc)) (then (return (i32.const 63))))
    (i32.load (i32.add (i32.const 1024) (i32.shl (local.get $i) (i32.const 2)))))

  (func $atoi (param $p i32) (result i32)
    (local $n i32) (local $c i32)
    (block $done
      (loop $next
        (local.set $c (i32.load8_u (local.get $p)))
        (br_if $done (i32.lt_u (local.get $c) (i32.const 48)))
        (br_if $done (i32.gt_u (local.get $c) (i32.const 57)))
        (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10)) (i32.sub (local.get $c) (i32.const 48))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $n))

  ;; argv[2..] joined by spaces, then a newline, to $fd
  (func $print_args (param $fd i32)
    (local $i i32)
    (local.set $i (i32.const 2))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (global.get $argc)))
        (if (i32.gt_u (local.get $i) (i32.const 2)) (then (call $write (local.get $fd) (i32.const 160) (i32.const 1))))
        (call $write (local.get $fd) (call $arg (local.get $i)) (call $strlen (call $arg (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $write (local.get $fd) (i32.const 161) (i32.const 1)))

  (func $print_env
    (local $i i32) (local $p i32) (local $count i32)
    (drop (call $environ_sizes_get (i32.const 8) (i32.const 12)))
    (local.set $count (i32.load (i32.const 8)))
    (drop (call $environ_get (i32.const 2048) (i32.const 20480)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (local.set $p (i32.load (i32.add (i32.const 2048) (i32.shl (local.get $i) (i32.const 2)))))
        (call $write (i32.const 1) (local.get $p) (call $strlen (local.get $p)))
        (call $write (i32.const 1) (i32.const 161) (i32.const 1))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))

  ;; copy $src to stdout until EOF or an error
  (func $copy (param $src i32)
    (local $n i32)
    (block $done
      (loop $next
        (i32.store (i32.const 0) (i32.const 65536))
        (i32.store (i32.const 4) (i32.const 65536))
        (br_if $done (call $fd_read (local.get $src) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $done (i32.eqz (local.get $n)))
        (call $write (i32.const 1) (i32.const 65536) (local.get $n))
        (br $next))))

  ;; the descriptor of the preopened directory named by the string at $name, or -1
  (func $preopen (param $name i32) (result i32)
    (local $fd i32) (local $len i32)
    (local.set $fd (i32.const 3))
    (block $done
      (loop $next
        (br_if $done (call $fd_prestat_get (local.get $fd) (i32.const 16)))
        (local.set $len (i32.load (i32.const 20)))
        (if (i32.le_u (local.get $len) (i32.const 4096))
          (then
            (drop (call $fd_prestat_dir_name (local.get $fd) (i32.const 131072) (local.get $len)))
            (if (call $is (local.get $name) (i32.const 131072) (local.get $len))
              (then (return (local.get $fd))))))
        (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
        (br $next)))
    (i32.const -1))

  ;; open argv[3] in the preopened directory argv[2]; exits 1 with a message when it cannot
  (func $open (param $oflags i32) (param $rights i64) (result i32)
    (local $dir i32)
    (local.set $dir (call $preopen (call $arg (i32.const 2))))
    (if (i32.lt_s (local.get $dir) (i32.const 0))
      (then (call $write (i32.const 2) (i32.const 176) (i32.const 28)) (call $proc_exit (i32.const 1))))
    (if (call $path_open (local.get $dir) (i32.const 0)
          (call $arg (i32.const 3)) (call $strlen (call $arg (i32.const 3)))
          (local.get $oflags) (local.get $rights) (i64.const 0) (i32.const 0) (i32.const 8))
      (then (call $write (i32.const 2) (i32.const 208) (i32.const 12)) (call $proc_exit (i32.const 1))))
    (i32.load (i32.const 8)))

  (func $sleep (param $seconds i32)
    (i64.store (i32.const 256) (i64.const 0))
    (i32.store8 (i32.const 264) (i32.const 0))
    (i32.store (i32.const 272) (i32.const 1))
    (i64.store (i32.const 280) (i64.mul (i64.extend_i32_u (local.get $seconds)) (i64.const 1000000000)))
    (i64.store (i32.const 288) (i64.const 0))
    (i32.store16 (i32.const 296) (i32.const 0))
    (drop (call $poll_oneoff (i32.const 256) (i32.const 320) (i32.const 1) (i32.const 352))))

  (func (export "_start")
    (local $cmd i32) (local $fd i32)
    (drop (call $args_sizes_get (i32.const 8) (i32.const 12)))
    (global.set $argc (i32.load (i32.const 8)))
    (drop (call $args_get (i32.const 1024) (i32.const 4096)))
    (local.set $cmd (call $arg (i32.const 1)))
    (if (call $is (local.get $cmd) (i32.const 96) (i32.const 4)) (then (call $print_args (i32.const 1)) (return)))
    (if (call $is (local.get $cmd) (i32.const 152) (i32.const 6)) (then (call $print_args (i32.const 2)) (return)))
    (if (call $is (local.get $cmd) (i32.const 104) (i32.const 3)) (then (call $print_env) (return)))
    (if (call $is (local.get $cmd) (i32.const 112) (i32.const 4))
      (then (call $proc_exit (call $atoi (call $arg (i32.const 2))))))
    (if (call $is (local.get $cmd) (i32.const 120) (i32.const 4)) (then (loop $forever (br $forever))))
    (if (call $is (local.get $cmd) (i32.const 128) (i32.const 3)) (then (call $copy (i32.const 0)) (return)))
    (if (call $is (local.get $cmd) (i32.const 224) (i32.const 4)) (then unreachable))
    (if (call $is (local.get $cmd) (i32.const 240) (i32.const 5))
      (then (call $sleep (call $atoi (call $arg (i32.const 2)))) (return)))
    (if (call $is (local.get $cmd) (i32.const 136) (i32.const 5))
      (then
        (local.set $fd (call $open (i32.const 9) (i64.const 64)))
        (call $write (local.get $fd) (call $arg (i32.const 4)) (call $strlen (call $arg (i32.const 4))))
        (drop (call $fd_close (local.get $fd)))
        (return)))
    (if (call $is (local.get $cmd) (i32.const 144) (i32.const 4))
      (then
        (local.set $fd (call $open (i32.const 0) (i64.const 2)))
        (call $copy (local.get $fd))
        (drop (call $fd_close (local.get $fd)))
        (return)))
    (call $write (i32.const 1) (i32.const 64) (i32.const 16)))
)
"""


def demo_module() -> bytes:
    """:data:`DEMO_WAT` compiled to a WebAssembly binary (needs the ``wasmtime`` package)."""
    import wasmtime

    return bytes(wasmtime.wat2wasm(DEMO_WAT))


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar(files: dict[str, bytes], dirs: tuple[str, ...] = ()) -> bytes:
    """An uncompressed, reproducible layer tar."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755, 0
            tf.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            tf.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _json(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True).encode()


def build_wasm_image(
    dest: Path,
    module: bytes | None = None,
    *,
    layout: str = "rootfs",
    ref: str = DEFAULT_REF,
    module_name: str = MODULE_NAME,
    platform: str = "",
    media_type: str = WASM_LAYER,
    filesystem_layer: bool = True,
) -> ImageInfo:
    """Write an OCI image layout tar holding ``module`` (default: the demo) to ``dest``.

    ``layout`` is ``rootfs`` (the module is ``/<module_name>`` in a filesystem layer) or
    ``layer`` (the module is a ``media_type`` layer; see the module docstring). ``platform``
    (``os/arch``) defaults to this machine's (``linux/amd64``), which ``ctr`` picks without
    ``--platform``; runwasi's images say ``wasip1/wasm``. ``filesystem_layer=False`` leaves the
    ``layer`` layout with the module layer alone (runwasi's layout exactly; ``ctr`` 1.6 cannot
    run it, ``pyctr`` and the CRI can).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    wasm = demo_module() if module is None else module
    os_name, _, arch = (platform or f"linux/{go_arch()}").partition("/")
    if layout == "rootfs":
        fs_layer = _tar({module_name: wasm}, dirs=("tmp",))
        entrypoint = [f"/{module_name}"]
    else:
        fs_layer = _tar({}, dirs=("tmp",))
        entrypoint = [module_name]
    fs_blob = gzip.compress(fs_layer, compresslevel=6, mtime=0)
    with_fs = filesystem_layer or layout == "rootfs"
    layers: list[dict[str, object]] = []
    blobs: list[bytes] = []
    if with_fs:
        layers.append({"mediaType": TAR_GZIP, "digest": _sha(fs_blob), "size": len(fs_blob)})
        blobs.append(fs_blob)
    if layout == "layer":
        layers.append(
            {
                "mediaType": media_type,
                "digest": _sha(wasm),
                "size": len(wasm),
                "annotations": {"org.opencontainers.image.title": module_name},
            }
        )
        blobs.append(wasm)
    config = _json(
        {
            "architecture": arch,
            "os": os_name,
            "config": {"Entrypoint": entrypoint, "Env": ["PATH=/"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [_sha(fs_layer)] if with_fs else []},
            "history": [{"created_by": "pycontainerd.tools.wasm"}],
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": _sha(config), "size": len(config)},
            "layers": layers,
        }
    )
    tag = ref.rsplit(":", 1)[-1] if ":" in ref.rsplit("/", 1)[-1] else "latest"
    index = _json(
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
        }
    )
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)] + [
            ("blobs/sha256/" + _sha(blob).removeprefix("sha256:"), blob)
            for blob in sorted({config, manifest, *blobs}, key=_sha)
        ]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tf.addfile(info, io.BytesIO(data))
    return ImageInfo(
        dest,
        ref,
        _sha(manifest),
        _sha(config),
        tuple(str(layer["digest"]) for layer in layers),
        (_sha(fs_layer),) if with_fs else (),
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m pycontainerd.tools.wasm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dest", type=Path, help="the .tar to write")
    parser.add_argument("--layout", choices=LAYOUTS, default="rootfs", help="where the module goes (default rootfs)")
    parser.add_argument("--ref", default=DEFAULT_REF, help=f"image name (default {DEFAULT_REF})")
    parser.add_argument("--module", type=Path, default=None, help="a .wasm (or .wat) file (default: the demo)")
    parser.add_argument("--name", default=MODULE_NAME, help=f"the module's file name (default {MODULE_NAME})")
    parser.add_argument("--platform", default="", help="os/arch of the config (default: this machine's)")
    parser.add_argument(
        "--no-filesystem-layer", action="store_true", help="layer layout: the module layer alone (runwasi's layout)"
    )
    args = parser.parse_args(argv)
    module = None
    if args.module is not None:
        module = args.module.read_bytes()
        if args.module.suffix == ".wat":
            import wasmtime

            module = bytes(wasmtime.wat2wasm(module.decode()))
    info = build_wasm_image(
        args.dest,
        module,
        layout=args.layout,
        ref=args.ref,
        module_name=args.name,
        platform=args.platform,
        filesystem_layer=not args.no_filesystem_layer,
    )
    print(f"{info.ref} {info.manifest_digest} ({args.layout} layout) -> {info.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
