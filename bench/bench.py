#!/usr/bin/env python3
"""Benchmark pycontainerd against the real containerd, both driven by Debian's ``ctr``, in one run.

Each daemon runs on private sockets with root and state in its own temp dir, from the same style of
containerd version-2 config (CRI disabled). Every workload takes its samples interleaved, one from
each daemon in turn (A, B, A, B...), so both see the same machine noise; the table gives the median
and p90 per daemon and the ratio of the medians (pycontainerd / containerd).

Usage (as root, with pycontainerd installed, e.g. ``pip install -e .``)::

    python3 bench/bench.py                          # every workload, both daemons
    python3 bench/bench.py --runs 10 --json out.json
    python3 bench/bench.py --only containerd        # the real containerd alone
    python3 bench/bench.py --workloads startup,memory

A workload is one :class:`Workload` in :data:`WORKLOADS`: a function that takes one sample from a
:class:`Daemon` handle (``.sock``, ``.pid``, ``.root``, ``.ctr(...)``). Daemons and temp dirs are
always removed at exit, on failure and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import shlex
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
    from collections.abc import Callable, Iterator, Sequence
    from types import FrameType

CTR = shutil.which("ctr") or "/usr/bin/ctr"
CONTAINERD = shutil.which("containerd", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin")
PYCONTAINERD = "pycontainerd"
REAL = "containerd"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
NAMESPACE = "bench"


Completed = subprocess.CompletedProcess[bytes]


class BenchError(Exception):
    """A daemon or workload failed; the message says why."""


# --------------------------------------------------------------------------------------------------
# Daemons


@dataclass
class Daemon:
    """One daemon under test, in its own temp dir (``base``) holding root, state, sockets, config and log.

    A handle is made for one use: :meth:`start` it (or let the workload do so), take samples, then
    :meth:`close` it, which stops the process and removes ``base``.

    Attributes:
        name: ``pycontainerd`` or ``containerd``.
        command: The daemon's argv before ``--config``.
        base: The private temp dir.
        proc: The daemon process once started.
    """

    name: str
    command: list[str]
    base: Path = field(init=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        # Short, under /tmp: unix socket paths are limited to 108 bytes.
        self.base = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-", dir="/tmp"))
        _LIVE.append(self)

    @property
    def sock(self) -> Path:
        """The gRPC socket."""
        return self.base / "d.sock"

    @property
    def root(self) -> Path:
        """The root directory (persistent data)."""
        return self.base / "root"

    @property
    def state(self) -> Path:
        """The state directory (runtime data)."""
        return self.base / "state"

    @property
    def config_path(self) -> Path:
        """The containerd-style config file both daemons are started with."""
        return self.base / "config.toml"

    @property
    def log_path(self) -> Path:
        """Where the daemon's stdout and stderr go."""
        return self.base / "daemon.log"

    @property
    def pid(self) -> int:
        """The daemon's process ID.

        Raises:
            BenchError: The daemon was not started.
        """
        if self.proc is None:
            raise BenchError(f"{self.name} is not running")
        return self.proc.pid

    def write_config(self) -> Path:
        """Write the version-2 config (the same for both daemons) and return its path."""
        self.config_path.write_text(
            "version = 2\n"
            f'root = "{self.root}"\n'
            f'state = "{self.state}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            "\n[grpc]\n"
            f'  address = "{self.sock}"\n'
            "\n[ttrpc]\n"
            f'  address = "{self.sock}.ttrpc"\n'
            "\n[debug]\n"
            f'  address = "{self.base / "debug.sock"}"\n'
            '  level = "warn"\n'
        )
        return self.config_path

    def start(self) -> float:
        """Start the daemon and wait until ``ctr version`` first succeeds.

        Returns:
            Seconds from exec until that first successful ``ctr version`` returned.

        Raises:
            BenchError: The daemon exited or did not answer within the timeout.
        """
        if self.proc is not None:
            raise BenchError(f"{self.name} already started")
        config = self.write_config()
        with self.log_path.open("ab") as log:
            t0 = time.perf_counter()
            # A session of its own: Ctrl-C reaches only us, and we stop the daemon in order.
            self.proc = subprocess.Popen(
                [*self.command, "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = t0 + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                why = f"exited with {self.proc.returncode} at start"
                raise BenchError(f"{self.name} {why}:\n{self.log_tail()}")
            if self.sock.exists() and self.ctr("version", check=False).returncode == 0:
                return time.perf_counter() - t0
            if time.perf_counter() > deadline:
                why = f"did not answer ctr version in {START_TIMEOUT:.0f}s"
                raise BenchError(f"{self.name} {why}:\n{self.log_tail()}")
            time.sleep(0.005)

    def ctr(self, *args: str, check: bool = True, timeout: float = 600.0) -> Completed:
        """Run ``ctr -a SOCK -n bench ARGS...``.

        Args:
            *args: The ctr subcommand and its arguments.
            check: Raise when ctr fails.
            timeout: Seconds before ctr is killed.

        Returns:
            The finished process, output captured.

        Raises:
            BenchError: ``check`` is set and ctr failed.
        """
        res = subprocess.run(
            [CTR, "-a", str(self.sock), "-n", NAMESPACE, *args],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
        if check and res.returncode != 0:
            err = res.stderr.decode(errors="replace").strip()
            raise BenchError(f"ctr {shlex.join(args)} against {self.name} failed ({res.returncode}): {err}")
        return res

    def memory(self) -> tuple[int, int]:
        """Return the daemon process's (RSS, PSS) in bytes, from ``/proc/PID/smaps_rollup``."""
        values: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                values[key] = int(rest.split()[0]) * 1024
        return values["Rss"], values["Pss"]

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the daemon's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the daemon: SIGTERM, then SIGKILL of its process group (it leads one) if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def close(self) -> None:
        """Stop the daemon, unmount whatever is left under ``base`` and remove it."""
        try:
            self.stop()
        finally:
            _unmount_under(self.base)
            shutil.rmtree(self.base, ignore_errors=True)
            if self in _LIVE:
                _LIVE.remove(self)


_LIVE: list[Daemon] = []


def _unmount_under(base: Path) -> None:
    """Lazily unmount every mount point at or under ``base``, deepest first."""
    prefix = str(base)
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    points = []
    for line in mountinfo:
        fields = line.split()
        point = fields[4].encode().decode("unicode_escape") if len(fields) > 4 else ""
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False, timeout=60)


def close_all() -> None:
    """Stop every daemon still alive and remove its temp dir."""
    for daemon in list(_LIVE):
        with contextlib.suppress(Exception):
            daemon.close()


def pycontainerd_command(explicit: str | None) -> list[str]:
    """The argv that starts pycontainerd.

    Args:
        explicit: A command given with ``--pycontainerd`` (split like a shell would), if any.

    Returns:
        That command; else the ``pycontainerd`` script beside this interpreter; else
        ``python -m pycontainerd`` when the package is importable; else ``pycontainerd`` on PATH.

    Raises:
        BenchError: pycontainerd is not installed.
    """
    if explicit:
        return shlex.split(explicit)
    beside = Path(sys.executable).parent / "pycontainerd"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    if importlib.util.find_spec("pycontainerd") is not None:
        return [sys.executable, "-m", "pycontainerd"]
    on_path = shutil.which("pycontainerd")
    if on_path:
        return [on_path]
    raise BenchError(
        "pycontainerd is not installed for this interpreter and not on PATH: run `pip install -e .` in the "
        "repository (or `bash scripts/install.sh` and use .venv/bin/python), pass --pycontainerd COMMAND, "
        "or measure the real containerd alone with --only containerd"
    )


@dataclass(frozen=True)
class DaemonKind:
    """How to make handles for one daemon under test."""

    name: str
    command: list[str]

    def new(self) -> Daemon:
        """A fresh handle, with a fresh temp dir, not started."""
        return Daemon(self.name, list(self.command))


# --------------------------------------------------------------------------------------------------
# Workloads

Sample = dict[str, float]
"""One sample of a workload: metric name to value ("" for a workload's only metric)."""


@dataclass(frozen=True)
class Workload:
    """One thing to measure.

    Attributes:
        name: Short name, for ``--workloads`` and the table.
        title: What is measured, in words.
        unit: Unit of the values the sample function returns.
        sample: Takes one sample from a daemon handle. With ``fresh`` it gets a new handle that is not
            started (and is closed after the sample); otherwise a started daemon kept for all samples.
        per_run: Samples per daemon for each ``--runs``.
        fresh: Every sample gets a fresh daemon (fresh temp root).
        setup: Called once on the started daemon before its samples (not with ``fresh``).
    """

    name: str
    title: str
    unit: str
    sample: Callable[[Daemon], Sample]
    per_run: int = 1
    fresh: bool = False
    setup: Callable[[Daemon], None] | None = None


def w_startup(daemon: Daemon) -> Sample:
    """Exec of the daemon until ``ctr version`` first succeeds, from a fresh root."""
    return {"": daemon.start()}


def w_version(daemon: Daemon) -> Sample:
    """Wall time of one ``ctr version``, in milliseconds."""
    t0 = time.perf_counter()
    daemon.ctr("version")
    return {"": (time.perf_counter() - t0) * 1000}


SETTLE_SECONDS = 1.0


def w_memory(daemon: Daemon) -> Sample:
    """RSS and PSS (MiB) of the idle daemon after start-up, one ``ctr version`` and a short settle."""
    daemon.start()
    daemon.ctr("version")
    time.sleep(SETTLE_SECONDS)
    rss, pss = daemon.memory()
    return {"rss": rss / 2**20, "pss": pss / 2**20}


WORKLOADS: list[Workload] = [
    Workload("startup", "daemon start-up: exec until `ctr version` succeeds", "s", w_startup, fresh=True),
    Workload("version", "`ctr version` latency (wall time per invocation)", "ms", w_version, per_run=20),
    Workload("memory", "idle memory after start-up + one `ctr version`", "MiB", w_memory, fresh=True),
]


# --------------------------------------------------------------------------------------------------
# Running and reporting

JsonObject = dict[str, object]
WorkloadResult = dict[str, dict[str, list[float]]]
"""metric -> daemon -> samples."""
Results = dict[str, WorkloadResult]
"""workload -> metric -> daemon -> samples."""


def run_workload(workload: Workload, kinds: Sequence[DaemonKind], runs: int) -> WorkloadResult:
    """Take ``runs * per_run`` samples of ``workload`` from each daemon, interleaved.

    Args:
        workload: What to measure.
        kinds: The daemons, in the order samples are taken within each round.
        runs: The ``--runs`` value.

    Returns:
        metric -> daemon -> samples.
    """
    out: WorkloadResult = {}

    def record(kind: DaemonKind, sample: Sample) -> None:
        for metric, value in sample.items():
            out.setdefault(metric, {k.name: [] for k in kinds})[kind.name].append(value)

    count = runs * workload.per_run
    if workload.fresh:
        for i in range(count):
            for kind in kinds:
                daemon = kind.new()
                try:
                    record(kind, workload.sample(daemon))
                finally:
                    daemon.close()
            _progress(workload.name, i + 1, count)
        return out

    daemons = [kind.new() for kind in kinds]
    try:
        for daemon in daemons:
            daemon.start()
            if workload.setup is not None:
                workload.setup(daemon)
        for i in range(count):
            for kind, daemon in zip(kinds, daemons, strict=True):
                record(kind, workload.sample(daemon))
            _progress(workload.name, i + 1, count)
    finally:
        for daemon in daemons:
            daemon.close()
    return out


def _progress(name: str, done: int, total: int) -> None:
    if sys.stderr.isatty():
        end = "\n" if done == total else ""
        print(f"\r   {name}: {done}/{total}", end=end, file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    """The median."""
    return statistics.median(values)


def p90(values: Sequence[float]) -> float:
    """The 90th percentile, nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.3f}"
    return f"{value:.4f}"


def table(results: Results, units: dict[str, str], names: Sequence[str]) -> str:
    """Render the results as a text table.

    Args:
        results: workload -> metric -> daemon -> samples.
        units: workload -> unit.
        names: The daemons, in column order.

    Returns:
        The table, one row per workload metric.
    """
    header = ["workload", "unit", "n"]
    for name in names:
        header += [f"{name} median", f"{name} p90"]
    if PYCONTAINERD in names and REAL in names:
        header.append("ratio py/real")
    rows = [header]
    for workload, metrics in results.items():
        for metric, by_daemon in metrics.items():
            label = f"{workload} {metric}".strip()
            row = [label, units[workload], str(max(len(v) for v in by_daemon.values()))]
            for name in names:
                samples = by_daemon.get(name, [])
                row += [_fmt(median(samples)), _fmt(p90(samples))] if samples else ["-", "-"]
            if PYCONTAINERD in names and REAL in names:
                py, real = by_daemon.get(PYCONTAINERD), by_daemon.get(REAL)
                row.append(f"{median(py) / median(real):.2f}" if py and real and median(real) else "-")
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _version_of(command: Sequence[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        res = subprocess.run([*command, "--version"], capture_output=True, timeout=30, check=False)
        return res.stdout.decode(errors="replace").strip()
    return "?"


def _summary(samples: list[float]) -> JsonObject:
    return {"median": median(samples), "p90": p90(samples), "samples": samples}


def to_json(results: Results, units: dict[str, str], kinds: Sequence[DaemonKind], runs: int) -> JsonObject:
    """The results with medians, p90s and the run's context, for ``--json``."""
    return {
        "meta": {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": platform.machine(),
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "runs": runs,
            "ctr": _version_of([CTR]),
            "daemons": {k.name: {"command": k.command, "version": _version_of(k.command)} for k in kinds},
        },
        "results": {
            workload: {
                metric or workload: {
                    "unit": units[workload],
                    **{name: _summary(s) for name, s in by_daemon.items() if s},
                }
                for metric, by_daemon in metrics.items()
            }
            for workload, metrics in results.items()
        },
    }


@contextlib.contextmanager
def _cleanup_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into SystemExit so ``finally`` blocks run; always close all daemons."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        # Ignore further Ctrl-C while cleaning up, so the daemons are not left behind.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            close_all()
        finally:
            signal.signal(signal.SIGINT, previous_int)
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    names = ",".join(w.name for w in WORKLOADS)
    parser = argparse.ArgumentParser(
        prog="bench.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--runs", type=int, default=5, help="samples per daemon, times a per-workload factor (default 5)")
    add("--only", choices=(PYCONTAINERD, REAL), help="measure one daemon alone (default: both, if installed)")
    add("--workloads", default=names, help=f"comma-separated subset of: {names}")
    add("--json", type=Path, metavar="FILE", help="also write the results (with all samples) here")
    add("--pycontainerd", metavar="COMMAND", help="the command that starts pycontainerd (default: find it)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    known = {w.name for w in WORKLOADS}
    unknown = [w for w in args.workloads.split(",") if w not in known]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; known: {names}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench.py: run as root (the daemons need it)", file=sys.stderr)
        return 2
    if not Path(CTR).exists():
        print("bench.py: ctr is not installed (apt-get install containerd)", file=sys.stderr)
        return 2
    kinds: list[DaemonKind] = []
    try:
        if args.only in (None, PYCONTAINERD):
            kinds.append(DaemonKind(PYCONTAINERD, pycontainerd_command(args.pycontainerd)))
        if args.only in (None, REAL):
            if CONTAINERD is None:
                if args.only == REAL:
                    raise BenchError("containerd is not installed (apt-get install containerd)")
                print("bench.py: containerd is not installed; measuring pycontainerd alone", file=sys.stderr)
            else:
                kinds.append(DaemonKind(REAL, [CONTAINERD]))
    except BenchError as exc:
        print(f"bench.py: {exc}", file=sys.stderr)
        return 2

    selected = [w for w in WORKLOADS if w.name in args.workloads.split(",")]
    units = {w.name: w.unit for w in selected}
    results: Results = {}
    for kind in kinds:
        print(f"{kind.name}: {shlex.join(kind.command)}", file=sys.stderr)
    status = 0
    with _cleanup_on_signals():
        try:
            for workload in selected:
                print(f"== {workload.name}: {workload.title}", file=sys.stderr, flush=True)
                results[workload.name] = run_workload(workload, kinds, args.runs)
        except BenchError as exc:
            print(f"bench.py: {exc}", file=sys.stderr)
            status = 1
        except KeyboardInterrupt:
            print("\nbench.py: interrupted; stopping the daemons", file=sys.stderr)
            status = 130
        except SystemExit as exc:  # SIGTERM or SIGHUP, see _cleanup_on_signals
            print("\nbench.py: stopped by a signal; stopping the daemons", file=sys.stderr)
            status = exc.code if isinstance(exc.code, int) else 1
    if results:
        print(f"\nmedians and p90 of interleaved samples (--runs {args.runs}); machines are noisy")
        print(table(results, units, [k.name for k in kinds]))
        if args.json:
            args.json.write_text(json.dumps(to_json(results, units, kinds, args.runs), indent=2) + "\n")
            print(f"results written to {args.json}", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
