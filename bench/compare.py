#!/usr/bin/env python3
"""pycontainerd side by side with the real containerd, driven by the same ctr, in one run.

Each workload runs against both daemons, interleaved (A, B, A, B...), each daemon on private
sockets with root and state in its own temp dir; results are medians (and p90) with the
ratio pycontainerd / containerd. Machines are noisy: run it more than once.

    sudo python3 bench/compare.py                 # every workload
    sudo python3 bench/compare.py --only startup,version,memory --runs 5
    sudo python3 bench/compare.py --json results.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

CTR = shutil.which("ctr") or "/usr/bin/ctr"
CONTAINERD = shutil.which("containerd")
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Daemon:
    """One daemon under test."""

    name: str
    argv_fn: Callable[[Path], list[str]]
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp")))
    proc: subprocess.Popen[bytes] | None = None
    cri: str = ""  # the CRI plugin's config table; empty = CRI disabled

    @property
    def sock(self) -> Path:
        return self.base / "d.sock"

    def write_config(self) -> Path:
        cfg = self.base / "config.toml"
        cfg.write_text(
            "version = 2\n"
            f'root = "{self.base}/root"\nstate = "{self.base}/state"\n'
            + ("" if self.cri else 'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n')
            + f'[grpc]\naddress = "{self.sock}"\n[ttrpc]\naddress = "{self.sock}.ttrpc"\n'
            f'[debug]\naddress = "{self.base}/debug.sock"\nlevel = "warn"\n'
            # pycontainerd serves io.containerd.runc.v2 with its own shim; this name reaches
            # Debian's Go shim, for like-for-like runs (containerd ignores the table).
            '[plugins."io.containerd.runtime.v2.task".runtimes."io.containerd.gorunc.v2"]\n'
            'path = "/usr/bin/containerd-shim-runc-v2"\n' + self.cri
        )
        return cfg

    def start(self, fresh_config: bool = True) -> float:
        """Start and return the seconds until ``ctr version`` first succeeds."""
        cfg = self.write_config() if fresh_config else self.base / "config.toml"
        t0 = time.perf_counter()
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # finds containerd-shim-pyrunc-v2
        self.proc = subprocess.Popen(self.argv_fn(cfg), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            if self.sock.exists() and self.ctr("version").returncode == 0:
                return time.perf_counter() - t0
            time.sleep(0.002)

    def ctr(self, *args: str, ns: str = "bench", stdin: int | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [CTR, "-a", str(self.sock), "-n", ns, *args], capture_output=True, timeout=600, check=False, stdin=stdin
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def reset(self) -> None:
        """Stop and forget all state (unmounting anything left under the base dir)."""
        self.stop()
        subprocess.run(
            ["sh", "-c", f"grep ' {self.base}' /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r umount -l"],
            check=False,
            timeout=60,
        )
        shutil.rmtree(self.base, ignore_errors=True)
        self.base.mkdir(parents=True)
        os.sync()  # the next run must not pay for this one's deletes (journal, discards)

    def memory(self) -> tuple[int, int]:
        """(RSS, PSS) of the daemon process in bytes."""
        assert self.proc is not None
        values = {}
        for line in Path(f"/proc/{self.proc.pid}/smaps_rollup").read_text().splitlines():
            parts = line.split()
            if parts and parts[0] in ("Rss:", "Pss:"):
                values[parts[0]] = int(parts[1]) * 1024
        return values["Rss:"], values["Pss:"]


def pycontainerd_argv(cfg: Path) -> list[str]:
    return [sys.executable, "-m", "pycontainerd", "--config", str(cfg)]


def containerd_argv(cfg: Path) -> list[str]:
    assert CONTAINERD is not None
    return [CONTAINERD, "--config", str(cfg)]


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def p90(xs: list[float]) -> float:
    return sorted(xs)[max(0, round(0.9 * len(xs)) - 1)]


Result = dict[str, list[float]]


def w_startup(daemons: list[Daemon], runs: int) -> Result:
    out: Result = {d.name: [] for d in daemons}
    for _ in range(runs):
        for d in daemons:
            d.reset()
            out[d.name].append(d.start())
            d.stop()
    return out


def w_version(daemons: list[Daemon], runs: int) -> Result:
    out: Result = {d.name: [] for d in daemons}
    for d in daemons:
        d.reset()
        d.start()
    for _ in range(runs * 20):
        for d in daemons:
            t0 = time.perf_counter()
            assert d.ctr("version").returncode == 0
            out[d.name].append(time.perf_counter() - t0)
    return out


def w_memory(daemons: list[Daemon], runs: int) -> Result:
    out: Result = {}
    for d in daemons:
        d.reset()
        d.start()
        d.ctr("version")
        time.sleep(1.0)
        rss, pss = d.memory()
        out[f"{d.name} rss"] = [rss / 2**20]
        out[f"{d.name} pss"] = [pss / 2**20]
    return out


def _big_file() -> Path:
    path = Path("/tmp/bench-1g.bin")
    if not path.exists() or path.stat().st_size != 1 << 30:
        chunk = os.urandom(16 << 20)
        with path.open("wb") as fh:
            for i in range(64):
                fh.write(i.to_bytes(8, "big") + chunk[8:])
    return path


def w_ingest(daemons: list[Daemon], runs: int) -> Result:
    path = _big_file()
    out: Result = {d.name: [] for d in daemons}
    for d in daemons:
        d.reset()
        d.start()
    for i in range(runs):
        for d in daemons:
            with path.open("rb") as fh:
                t0 = time.perf_counter()
                res = d.ctr("content", "ingest", f"big-{i}", stdin=fh.fileno())
                elapsed = time.perf_counter() - t0
            assert res.returncode == 0, res.stderr
            out[d.name].append((1 << 30) / elapsed / 1e6)
            d.ctr("content", "rm", "sha256:" + _digest(path))
    return out


def _digest(path: Path) -> str:
    cached = path.with_suffix(".sha256")
    if cached.exists():
        return cached.read_text()
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(16 << 20):
            h.update(chunk)
    cached.write_text(h.hexdigest())
    return h.hexdigest()


def _fill(d: Daemon, count: int) -> None:
    sys.path.insert(0, str(REPO / "src"))
    import grpc

    from pycontainerd.api.containerd.services.content.v1 import content_pb2, content_pb2_grpc

    md = (("containerd-namespace", "bench"),)
    with grpc.insecure_channel(f"unix:{d.sock}") as ch:
        stub = content_pb2_grpc.ContentStub(ch)
        for i in range(count):
            data = f"blob {i}".encode()
            dg = "sha256:" + hashlib.sha256(data).hexdigest()
            req = content_pb2.WriteContentRequest(
                action=content_pb2.COMMIT,
                ref=f"fill-{i}",
                total=len(data),
                expected=dg,
                data=data,
                labels={"containerd.io/gc.root": "1"},
            )
            list(stub.Write(iter([req]), metadata=md))


def w_content_ls(daemons: list[Daemon], runs: int) -> Result:
    out: Result = {d.name: [] for d in daemons}
    for d in daemons:
        d.reset()
        d.start()
        _fill(d, 10_000)
    for _ in range(runs):
        for d in daemons:
            t0 = time.perf_counter()
            res = d.ctr("content", "ls", "-q")
            out[d.name].append(time.perf_counter() - t0)
            assert res.stdout.count(b"\n") >= 10_000, res.stdout[-200:]
    return out


def _image(path: Path) -> Path:
    if not path.exists():
        subprocess.run(
            [sys.executable, "-m", "pycontainerd.tools.busybox", str(path), "--ref", "docker.io/library/busybox:bench"],
            check=True,
            capture_output=True,
            cwd=REPO,
        )
    return path


GO_SHIM = {"pycontainerd": "io.containerd.gorunc.v2", "containerd": "io.containerd.runc.v2"}
DEFAULT = {"pycontainerd": "io.containerd.runc.v2", "containerd": "io.containerd.runc.v2"}
PYSHIM = {"pycontainerd": "io.containerd.pyrunc.v2", "containerd": "io.containerd.pyrunc.v2"}


def w_run(daemons: list[Daemon], runs: int, runtimes: dict[str, str] = GO_SHIM) -> Result:
    image = _image(Path("/tmp/bench-busybox.tar"))
    out: Result = {d.name: [] for d in daemons}
    for d in daemons:
        d.reset()
        d.start()
        assert d.ctr("images", "import", str(image)).returncode == 0
    for i in range(runs * 4):
        for d in daemons:
            t0 = time.perf_counter()
            res = d.ctr(
                "run", "--rm", "--runtime", runtimes[d.name], "docker.io/library/busybox:bench", f"r{i}", "true"
            )
            out[d.name].append(time.perf_counter() - t0)
            assert res.returncode == 0, res.stderr
    return out


USERNS_MAPS = ["--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536"]
USERNS_IMAGE = "docker.io/library/busybox:userns"
USERNS_LAYERS = ["--extra-layers", "5", "--files-per-layer", "2000"]


def w_run_userns(daemons: list[Daemon], runs: int) -> Result:
    """``ctr run --rm busybox true`` without and with a user namespace, default runtime (ours
    vs containerd's Go shim: ctr sends the stdio owner only to runtimes named io.containerd.runc.*).

    ``idmap``: ``--remap-labels``, our overlayfs shows the layers through ID-mapped mounts
    (containerd 1.6 ignores the labels, so it is not measured there). ``chown``: plain
    ``--uidmap``, ctr itself makes a chown-remapped copy of the image (``<chain>-<uid>-<gid>``),
    which garbage collection may take after each ``--rm``. The first run of each is also
    reported on its own (``cold``): a fresh copy every time it is not cached.
    """
    image = Path("/tmp/bench-busybox-userns.tar")  # 6 layers, ~10k files: what a chown copy costs shows
    if not image.exists():
        subprocess.run(
            [sys.executable, "-m", "pycontainerd.tools.busybox", str(image), "--ref", USERNS_IMAGE, *USERNS_LAYERS],
            check=True,
            capture_output=True,
            cwd=REPO,
        )
    variants = {"plain": [], "userns idmap": [*USERNS_MAPS, "--remap-labels"], "userns chown": USERNS_MAPS}
    out: Result = {}
    for d in daemons:
        d.reset()
        d.base.chmod(0o711)  # as /run/containerd: a user namespace's root must reach the bundles
        d.start()
        assert d.ctr("images", "import", str(image)).returncode == 0
    for i in range(runs * 4):
        for d in daemons:
            for name, flags in variants.items():
                if d.name == "containerd" and "idmap" in name:
                    continue
                t0 = time.perf_counter()
                res = d.ctr("run", "--rm", "--runtime", DEFAULT[d.name], *flags, USERNS_IMAGE, f"u{i}", "true")
                elapsed = time.perf_counter() - t0
                assert res.returncode == 0, (d.name, name, res.stderr)
                out.setdefault(f"{d.name} {name}" + (" (cold)" if i == 0 else ""), []).append(elapsed)
    return out


def _pss_of(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1]) * 1024
    return total / 2**20


def _shim_pids(d: Daemon) -> list[int]:
    pids = []
    for pid_file in (d.base / "state").rglob("shim.pid"):
        pids.append(int(pid_file.read_text()))
    if not pids:  # the Go shim writes shim.pid in the bundle too; fall back to the process table
        out = subprocess.run(["pgrep", "-f", f"containerd-shim.*{d.sock}"], capture_output=True, text=True, check=False)
        pids = [int(p) for p in out.stdout.split()]
    return sorted(set(pids))


def w_shim_memory(daemons: list[Daemon], runs: int) -> Result:
    """PSS of the shims behind 10 detached containers: one shim each (Go), or one per group (ours)."""
    image = _image(Path("/tmp/bench-busybox.tar"))
    out: Result = {}
    d = daemons[0]
    for runtime, grouped in (
        ("io.containerd.gorunc.v2", False),
        ("io.containerd.pyrunc.v2", False),
        ("io.containerd.pyrunc.v2", True),
    ):
        d.reset()
        d.start()
        assert d.ctr("images", "import", str(image)).returncode == 0
        for i in range(10):
            # A crashed earlier run may have left these behind in the runc root.
            d.ctr("tasks", "kill", "-s", "9", f"m{i}")
            d.ctr("tasks", "rm", "-f", f"m{i}")
            extra = ["--annotation", "io.containerd.runc.v2.group=bench"] if grouped else []
            res = d.ctr(
                "run", "-d", "--runtime", runtime, *extra, "docker.io/library/busybox:bench", f"m{i}", "sleep", "600"
            )
            assert res.returncode == 0, res.stderr
        pids = _shim_pids(d)
        label = {"gorunc": "Go shim", "pyrunc": "our shim"}[runtime.split(".")[2]] + (" grouped" if grouped else "")
        out[f"{label} per container"] = [_pss_of(pids) / 10]
        for i in range(10):
            d.ctr("tasks", "kill", "-s", "9", f"m{i}")
        time.sleep(1)
        for i in range(10):
            d.ctr("tasks", "rm", "-f", f"m{i}")
            d.ctr("containers", "rm", f"m{i}")
    return out


def w_pod_memory(daemons: list[Daemon], runs: int) -> Result:
    """Shim PSS of a pod of 5 containers: a 'shim'-controller sandbox (one shim for the pause
    process and the 5 containers) against 5 containers each in its own Go shim."""
    import grpc

    from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2 as sbx
    from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2_grpc as sbx_grpc
    from pycontainerd.api.containerd.types import sandbox_pb2 as sbx_types

    image = _image(Path("/tmp/bench-busybox.tar"))
    d = daemons[0]
    out: Result = {"one shim per pod (ours)": [], "Go shims, one per container": []}
    for _ in range(max(1, runs // 2)):
        d.reset()
        d.start()
        assert d.ctr("images", "import", str(image)).returncode == 0
        md = (("containerd-namespace", "bench"),)
        ch = grpc.insecure_channel(f"unix:{d.sock}")
        store, controller = sbx_grpc.StoreStub(ch), sbx_grpc.ControllerStub(ch)
        record = sbx_types.Sandbox(
            sandbox_id="pod", runtime=sbx_types.Sandbox.Runtime(name="io.containerd.pyrunc.v2"), sandboxer="shim"
        )
        store.Create(sbx.StoreCreateRequest(sandbox=record), metadata=md)
        controller.Create(sbx.ControllerCreateRequest(sandbox_id="pod", sandboxer="shim"), metadata=md)
        pause = controller.Start(sbx.ControllerStartRequest(sandbox_id="pod", sandboxer="shim"), metadata=md).pid
        joins = ["--with-ns", f"network:/proc/{pause}/ns/net", "--with-ns", f"ipc:/proc/{pause}/ns/ipc"]
        for i in range(5):
            res = d.ctr(
                "run", "-d", "--runtime", "io.containerd.pyrunc.v2",
                "--annotation", "io.kubernetes.cri.sandbox-id=pod", *joins,
                "docker.io/library/busybox:bench", f"p{i}", "sleep", "600",
            )  # fmt: skip
            assert res.returncode == 0, res.stderr
        out["one shim per pod (ours)"].append(_pss_of(_shim_pids(d)))
        for i in range(5):
            d.ctr("tasks", "kill", "-s", "9", f"p{i}")
        time.sleep(0.5)
        for i in range(5):
            d.ctr("tasks", "rm", "-f", f"p{i}")
        controller.Shutdown(sbx.ControllerShutdownRequest(sandbox_id="pod", sandboxer="shim"), metadata=md)
        ch.close()
        d.reset()
        d.start()
        assert d.ctr("images", "import", str(image)).returncode == 0
        for i in range(5):
            res = d.ctr(
                "run",
                "-d",
                "--runtime",
                "io.containerd.gorunc.v2",
                "docker.io/library/busybox:bench",
                f"g{i}",
                "sleep",
                "600",
            )
            assert res.returncode == 0, res.stderr
        out["Go shims, one per container"].append(_pss_of(_shim_pids(d)))
        for i in range(5):
            d.ctr("tasks", "kill", "-s", "9", f"g{i}")
        time.sleep(0.5)
        for i in range(5):
            d.ctr("tasks", "rm", "-f", f"g{i}")
        d.reset()
    return out


def _big_image(path: Path) -> Path:
    """~300 MB, five layers of generated files (~25k files), plus the busybox base layer."""
    if not path.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pycontainerd.tools.busybox",
                str(path),
                "--ref",
                "docker.io/library/big:bench",
                "--extra-layers",
                "5",
                "--files-per-layer",
                "5000",
                "--file-bytes",
                "12000",
            ],
            check=True,
            capture_output=True,
            cwd=REPO,
        )
    return path


def w_import(daemons: list[Daemon], runs: int) -> Result:
    """ctr images import (with unpack) of the big image, fresh daemon state each time."""
    image = _big_image(Path("/tmp/bench-big.tar"))
    out: Result = {d.name: [] for d in daemons}
    for _ in range(max(1, runs // 2)):
        for d in daemons:
            d.reset()
            d.start()
            t0 = time.perf_counter()
            res = d.ctr("images", "import", str(image))
            out[d.name].append(time.perf_counter() - t0)
            assert res.returncode == 0, res.stderr
    return out


def _pyctr(d: Daemon, *args: str) -> None:
    cmd = [sys.executable, "-m", "pycontainerd.cli.main", "-a", str(d.sock), "-n", "bench", *args]
    res = subprocess.run(cmd, capture_output=True, timeout=600, check=False, cwd=REPO)
    assert res.returncode == 0, res.stderr


def w_pull(daemons: list[Daemon], runs: int) -> Result:
    """Cold pull (fetch + unpack) of the big image from a local docker-registry.

    pycontainerd pulls daemon-side through Transfer (pyctr images pull); containerd 1.6 has no
    Transfer, so its ctr pulls client-side. "pycontainerd (ctr pull)" is ctr's client-side pull
    against pycontainerd, the like-for-like client.
    """
    sys.path.insert(0, str(REPO))
    from tests.support.registry import running_registry

    image = _big_image(Path("/tmp/bench-big.tar"))
    out: Result = {d.name: [] for d in daemons}
    out["pycontainerd (ctr pull)"] = []
    with running_registry() as registry:
        remote = f"{registry.host}/bench/big:1"
        seed = daemons[0]
        seed.reset()
        seed.start()
        assert seed.ctr("images", "import", "--no-unpack", str(image)).returncode == 0
        _pyctr(seed, "images", "push", "--plain-http", remote, "docker.io/library/big:bench")
        contenders = [(d, d.name == "pycontainerd") for d in daemons] + [(daemons[0], False)]
        for round_no in range(max(1, runs // 2)):
            # Rotate who goes first: on this disk a run is slowed by the deletes before it.
            shift = round_no % len(contenders)
            for d, transfer in contenders[shift:] + contenders[:shift]:
                d.reset()
                d.start()
                t0 = time.perf_counter()
                if transfer:
                    _pyctr(d, "images", "pull", "--plain-http", remote)
                else:
                    res = d.ctr("images", "pull", "--plain-http", remote)
                    assert res.returncode == 0, res.stderr
                label = d.name if transfer or d.name != "pycontainerd" else "pycontainerd (ctr pull)"
                out[label].append(time.perf_counter() - t0)
    return out


def w_export(daemons: list[Daemon], runs: int) -> Result:
    image = _big_image(Path("/tmp/bench-big.tar"))
    out: Result = {d.name: [] for d in daemons}
    for d in daemons:
        d.reset()
        d.start()
        assert d.ctr("images", "import", str(image)).returncode == 0
    for i in range(runs):
        for d in daemons:
            dest = d.base / f"export-{i}.tar"
            t0 = time.perf_counter()
            res = d.ctr("images", "export", str(dest), "docker.io/library/big:bench")
            out[d.name].append(time.perf_counter() - t0)
            assert res.returncode == 0, res.stderr
            dest.unlink()
    return out


def w_restore(daemons: list[Daemon], runs: int) -> Result:
    """50 detached containers (Go shim both sides), kill -9 the daemon, time until all 50 are RUNNING again."""
    image = _image(Path("/tmp/bench-busybox.tar"))
    out: Result = {d.name: [] for d in daemons}
    count = 50
    for d in daemons:
        d.reset()
        d.start()
        assert d.ctr("images", "import", str(image)).returncode == 0
        for i in range(count):
            res = d.ctr(
                "run",
                "-d",
                "--runtime",
                GO_SHIM[d.name],
                "docker.io/library/busybox:bench",
                f"k{i}-{d.name}",
                "sleep",
                "900",
            )
            assert res.returncode == 0, res.stderr
    try:
        for _ in range(max(1, runs // 2)):
            for d in daemons:
                assert d.proc is not None
                d.proc.kill()
                d.proc.wait()
                t0 = time.perf_counter()
                d.start(fresh_config=False)
                while True:
                    listing = d.ctr("tasks", "ls").stdout.decode()
                    if listing.count("RUNNING") >= count:
                        break
                    time.sleep(0.01)
                out[d.name].append(time.perf_counter() - t0)
    finally:
        for d in daemons:
            for i in range(count):
                d.ctr("tasks", "kill", "-s", "9", f"k{i}-{d.name}")
            time.sleep(1)
            for i in range(count):
                d.ctr("tasks", "rm", "-f", f"k{i}-{d.name}")
                d.ctr("containers", "rm", f"k{i}-{d.name}")
    return out


def w_pod_start(daemons: list[Daemon], runs: int) -> Result:
    """CRI RunPodSandbox + CreateContainer + StartContainer (see bench/cri_pods.py)."""
    sys.path.insert(0, str(REPO / "bench"))
    import cri_pods

    def start(d: object, cri: str) -> None:
        assert isinstance(d, Daemon)
        d.reset()
        d.cri = cri_pods.cri_config(d.name, d.base)
        d.start()

    try:
        return cri_pods.measure(daemons, runs, _image(Path("/tmp/bench-busybox.tar")), start)  # type: ignore[arg-type]
    finally:
        for d in daemons:
            d.reset()
            d.cri = ""


WASM_REF = "docker.io/library/wasm-demo:bench"
WASM_RUNTIME = "io.containerd.wasmtime.v1"


def w_wasm_start(daemons: list[Daemon], runs: int) -> Result:
    """A wasm task (containerd-shim-wasmtime-v1, the demo module of pycontainerd.tools.wasm
    printing one line) next to a runc container (busybox ``true``; Debian's Go shim, and our
    pyrunc shim), on both daemons: ``run`` is ``ctr run --rm`` end to end, ``start`` is
    ``ctr tasks start -d`` of a container created beforehand (shim start + Create + Start)."""
    wasm_image = Path("/tmp/bench-wasm.tar")
    if not wasm_image.exists():
        subprocess.run(
            [sys.executable, "-m", "pycontainerd.tools.wasm", str(wasm_image), "--ref", WASM_REF],
            check=True,
            capture_output=True,
            cwd=REPO,
        )
    busybox = _image(Path("/tmp/bench-busybox.tar"))
    kinds = {
        "wasm": (WASM_REF, {d.name: WASM_RUNTIME for d in daemons}, ["/app.wasm"]),
        "runc Go shim": ("docker.io/library/busybox:bench", GO_SHIM, ["true"]),
        "runc pyrunc": ("docker.io/library/busybox:bench", PYSHIM, ["true"]),
    }
    cache = Path(tempfile.mkdtemp(prefix="bench-wasm-cache-", dir="/tmp"))
    os.environ["PYCONTAINERD_WASM_CACHE"] = str(cache)  # the shims inherit it from the daemons
    out: Result = {f"{d.name} {kind} {what}": [] for kind in kinds for what in ("run", "start") for d in daemons}
    try:
        for d in daemons:
            d.reset()
            d.start()
            for image in (wasm_image, busybox):
                assert d.ctr("images", "import", str(image)).returncode == 0
        for i in range(runs * 4):
            for kind, (ref, runtimes, args) in kinds.items():
                for d in daemons:
                    t0 = time.perf_counter()
                    res = d.ctr("run", "--rm", "--runtime", runtimes[d.name], ref, f"w{i}", *args)
                    out[f"{d.name} {kind} run"].append(time.perf_counter() - t0)
                    assert res.returncode == 0, res.stderr
                    cid = f"s{i}"
                    assert d.ctr("containers", "create", "--runtime", runtimes[d.name], ref, cid, *args).returncode == 0
                    t0 = time.perf_counter()
                    res = d.ctr("tasks", "start", "-d", cid)
                    out[f"{d.name} {kind} start"].append(time.perf_counter() - t0)
                    assert res.returncode == 0, res.stderr
                    d.ctr("tasks", "rm", "-f", cid)
                    d.ctr("containers", "rm", cid)
    finally:
        os.environ.pop("PYCONTAINERD_WASM_CACHE", None)
        shutil.rmtree(cache, ignore_errors=True)
    return out


WORKLOADS: dict[str, tuple[str, str, Callable[[list[Daemon], int], Result]]] = {
    "startup": ("daemon start-up (exec until ctr version answers)", "s", w_startup),
    "version": ("ctr version latency", "s", w_version),
    "memory": ("idle memory after start-up", "MiB", w_memory),
    "ingest": ("ctr content ingest 1 GiB", "MB/s", w_ingest),
    "content-ls": ("ctr content ls with 10,000 blobs", "s", w_content_ls),
    "run": ("ctr run --rm busybox true (Go shim both sides)", "s", w_run),
    "run-pyshim": (
        "ctr run --rm busybox true (containerd-shim-pyrunc-v2 both sides)",
        "s",
        lambda daemons, runs: w_run(daemons, runs, PYSHIM),
    ),
    "run-default": (
        "ctr run --rm busybox true, default runtime (ours vs containerd's Go shim)",
        "s",
        lambda daemons, runs: w_run(daemons, runs, DEFAULT),
    ),
    "run-userns": ("ctr run --rm busybox true, with and without --uidmap/--gidmap", "s", w_run_userns),
    "import": ("ctr images import + unpack, ~300 MB / 5 layers / 25k files", "s", w_import),
    "export": ("ctr images export of the same image", "s", w_export),
    "pull": ("cold pull + unpack of the same image from a local docker-registry", "s", w_pull),
    "restore": ("restart after kill -9 with 50 running containers, until all RUNNING", "s", w_restore),
    "shim-memory": ("shim memory, 10 detached containers", "MiB", lambda d, r: w_shim_memory(d, r)),
    "pod-memory": ("shim memory (PSS) of a pod of 5 containers", "MiB", w_pod_memory),
    "pod-start": ("CRI pod start: RunPodSandbox + CreateContainer + StartContainer", "s", w_pod_start),
    "wasm-start": ("wasm task (io.containerd.wasmtime.v1) vs runc container: run --rm and start", "s", w_wasm_start),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--no-containerd", action="store_true", help="measure pycontainerd alone")
    args = parser.parse_args()
    daemons = [Daemon("pycontainerd", pycontainerd_argv)]
    if CONTAINERD and not args.no_containerd:
        daemons.append(Daemon("containerd", containerd_argv))
    results: dict[str, Result] = {}
    try:
        for key in args.only.split(","):
            title, unit, fn = WORKLOADS[key]
            print(f"== {title}", flush=True)
            res = fn(daemons, args.runs)
            results[key] = res
            for name, values in res.items():
                print(f"   {name:<22} median {median(values):10.4f} {unit}   p90 {p90(values):10.4f}   n={len(values)}")
            names = [d.name for d in daemons]
            if len(names) == 2 and all(n in res for n in names):
                ratio = median(res[names[0]]) / median(res[names[1]])
                print(f"   ratio pycontainerd/containerd: {ratio:.2f}")
            elif key == "memory" and len(daemons) == 2:
                for kind in ("rss", "pss"):
                    ratio = median(res[f"pycontainerd {kind}"]) / median(res[f"containerd {kind}"])
                    print(f"   ratio {kind} pycontainerd/containerd: {ratio:.2f}")
    finally:
        for d in daemons:
            d.reset()
            shutil.rmtree(d.base, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
