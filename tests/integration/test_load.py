"""Load: parallel clients create, start, stop and delete containers through the real ctr; every
call succeeds, latency percentiles are reported, and afterwards the daemon holds no more file
descriptors, memory, mounts, shims or cgroups than it did before.

Defaults: 20 clients, 200 containers in all (10 each), within a time bound. A longer run:
``PYCONTAINERD_LOAD_CONTAINERS=2000 PYCONTAINERD_LOAD_SECONDS=1800``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from pycontainerd.tools.busybox import build_image
from tests.support.daemon import CTR, DaemonProcess, running_daemon

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow]

NS = "load"
REF = "docker.io/library/busybox:load"
STEPS = ("create", "start", "kill", "delete", "remove")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def mounts_under(base: Path) -> list[str]:
    return [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if str(base) in line.split()[4]
    ]


def shim_count(d: DaemonProcess) -> int:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if "containerd-shim" in line and str(d.address) in line)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def test_parallel_clients_churn_containers_without_errors_or_leaks(tmp_path: Path) -> None:
    total = int(os.environ.get("PYCONTAINERD_LOAD_CONTAINERS", "200"))
    clients = int(os.environ.get("PYCONTAINERD_LOAD_CLIENTS", "20"))
    budget = float(os.environ.get("PYCONTAINERD_LOAD_SECONDS", "240"))
    image = build_image(tmp_path / "bb.tar", ref=REF)
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    lock = threading.Lock()
    with running_daemon() as d:
        d.ctr("images", "import", str(image.path), namespace=NS)
        # Warm up (shim template, caches), then take the baseline.
        d.ctr("run", "--rm", REF, "warm", "true", namespace=NS)
        time.sleep(0.5)
        base_fds, base_rss = fd_count(d.pid), rss_bytes(d.pid)
        base_mounts, base_shims = mounts_under(d.base), shim_count(d)
        deadline = time.monotonic() + budget
        per_client = total // clients

        def step(name: str, *args: str) -> bool:
            started = time.perf_counter()
            result = subprocess.run(
                [CTR, "-a", str(d.address), "-n", NS, *args],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                stdin=subprocess.DEVNULL,
            )
            elapsed = time.perf_counter() - started
            with lock:
                if result.returncode != 0:
                    errors.append(f"{name} {' '.join(args)}: {result.stderr.strip()}")
                    return False
                latencies[name].append(elapsed)
            return True

        def client(index: int) -> None:
            for n in range(per_client):
                if time.monotonic() > deadline:
                    return
                cid = f"l{index}-{n}"
                _ = (
                    step("create", "containers", "create", REF, cid, "sleep", "600")
                    and step("start", "tasks", "start", "-d", cid)
                    and step("kill", "tasks", "kill", "-s", "KILL", cid)
                    and step("delete", "tasks", "rm", "-f", cid)
                    and step("remove", "containers", "rm", cid)
                )

        started = time.monotonic()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - started
        time.sleep(1.0)  # shims exit after their last task; let them go
        fds, rss = fd_count(d.pid), rss_bytes(d.pid)
        mounts, shims = mounts_under(d.base), shim_count(d)
        leftovers = d.ctr("containers", "ls", "-q", namespace=NS).stdout.split()
        tasks = d.ctr("tasks", "ls", "-q", namespace=NS).stdout.split()
    done = len(latencies["remove"])
    report = {
        "clients": clients,
        "containers": done,
        "wall_seconds": round(wall, 1),
        "containers_per_second": round(done / wall, 2),
        "daemon_fds": [base_fds, fds],
        "daemon_rss_mib": [round(base_rss / 2**20, 1), round(rss / 2**20, 1)],
        "latency_ms": {
            name: {
                "p50": round(statistics.median(values) * 1000, 1),
                "p90": round(percentile(values, 90) * 1000, 1),
                "p99": round(percentile(values, 99) * 1000, 1),
                "max": round(max(values) * 1000, 1),
            }
            for name, values in latencies.items()
            if values
        },
    }
    print(json.dumps(report, indent=2))
    (Path(os.environ.get("PYCONTAINERD_LOAD_REPORT", tmp_path / "load.json"))).write_text(json.dumps(report, indent=2))
    assert errors == [], errors[:5]
    assert done == per_client * clients or time.monotonic() > deadline, f"only {done} containers in the time bound"
    assert done >= min(total, 20), "the time bound was too short to mean anything"
    assert leftovers == [] and tasks == [], (leftovers, tasks)
    assert fds <= base_fds + 5, f"file descriptors: {base_fds} -> {fds}"
    assert rss <= base_rss + 64 * 2**20, f"RSS: {base_rss / 2**20:.0f} -> {rss / 2**20:.0f} MiB"
    assert mounts == base_mounts, set(mounts) ^ set(base_mounts)
    assert shims == base_shims, f"shims: {base_shims} -> {shims}"
    for cid in (f"l{i}-{n}" for i in range(clients) for n in range(per_client)):
        assert not Path(f"/sys/fs/cgroup/memory/{NS}/{cid}").exists(), f"cgroup of {cid} left behind"
