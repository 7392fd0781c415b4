#!/usr/bin/env python3
"""Unpack time of the ~300 MB image (5 layers, ~25k files) per snapshotter, pycontainerd and the
real containerd side by side, driven by the same ctr in one run.

For each snapshotter, each daemon starts from empty state and runs
``ctr images import --snapshotter NAME`` (fetch from the archive + unpack); the runs alternate
between the daemons. btrfs runs on a freshly made loop-mounted btrfs placed at the snapshotter's
root; ``--fs ext4`` puts every daemon's whole state on a fresh loop-mounted ext4 instead of the
root filesystem (this machine's root filesystem is mounted with ``discard``, which makes bulk
writes and deletes slow and noisy). containerd 1.6 has no blockfile snapshotter.

    sudo .venv/bin/python bench/unpack.py --runs 3
    sudo .venv/bin/python bench/unpack.py --runs 3 --fs ext4 --only overlayfs,native
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import CONTAINERD, Daemon, _big_image, containerd_argv, median, pycontainerd_argv

SNAPSHOTTERS = ("overlayfs", "native", "btrfs", "blockfile")
UNSUPPORTED = {("containerd", "blockfile")}  # containerd 1.6 predates the blockfile snapshotter


def _run(*cmd: str) -> None:
    subprocess.run(list(cmd), check=True, capture_output=True, timeout=300)


def _fresh_fs(kind: str, image: Path, target: Path, size: str) -> None:
    """A new ``kind`` filesystem in ``image``, loop-mounted at ``target``."""
    image.unlink(missing_ok=True)
    _run("truncate", "-s", size, str(image))
    if kind == "btrfs":
        _run("mkfs.btrfs", "-q", "-f", str(image))
    else:
        _run("mkfs.ext4", "-q", "-F", "-E", "nodiscard", str(image))
    target.mkdir(parents=True, exist_ok=True)
    _run("mount", "-o", "loop", str(image), str(target))


def measure(daemon: Daemon, snapshotter: str, archive: Path, scratch: Path, fs: str) -> float:
    daemon.reset()
    if fs == "ext4":
        _fresh_fs("ext4", scratch / f"{daemon.name}-ext4.img", daemon.base, "6G")
    if snapshotter == "btrfs":
        target = daemon.base / "root" / "io.containerd.snapshotter.v1.btrfs"
        _fresh_fs("btrfs", scratch / f"{daemon.name}-btrfs.img", target, "4G")
    daemon.start()
    try:
        started = time.perf_counter()
        result = daemon.ctr("images", "import", "--snapshotter", snapshotter, str(archive))
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"{daemon.name} {snapshotter}: {result.stderr.decode(errors='replace')}")
        listed = daemon.ctr("snapshots", "--snapshotter", snapshotter, "ls").stdout.decode()
        if "Committed" not in listed:
            raise RuntimeError(f"{daemon.name} {snapshotter}: nothing unpacked")
        return elapsed
    finally:
        daemon.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default=",".join(SNAPSHOTTERS), help="comma-separated snapshotters")
    parser.add_argument("--fs", choices=["root", "ext4"], default="root", help="where daemon state lives")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    archive = _big_image(Path("/tmp/bench-big.tar"))
    daemons = [Daemon("pycontainerd", pycontainerd_argv)]
    if CONTAINERD:
        daemons.append(Daemon("containerd", containerd_argv))
    scratch = Path(tempfile.mkdtemp(prefix="bench-unpack-", dir="/tmp"))
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for snapshotter in args.only.split(","):
            runs: dict[str, list[float]] = {d.name: [] for d in daemons if (d.name, snapshotter) not in UNSUPPORTED}
            for _ in range(args.runs):
                for d in daemons:
                    if d.name in runs:
                        runs[d.name].append(measure(d, snapshotter, archive, scratch, args.fs))
            results[snapshotter] = runs
            line = f"{snapshotter:<10}" + "".join(f"  {name} {median(v):7.2f} s" for name, v in runs.items())
            if len(runs) == 2:
                line += f"  ratio {median(runs['pycontainerd']) / median(runs['containerd']):.2f}"
            print(line, flush=True)
    finally:
        for d in daemons:
            d.reset()
            shutil.rmtree(d.base, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
