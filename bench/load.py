#!/usr/bin/env python3
"""Container churn under parallel clients, pycontainerd and the real containerd side by side.

N clients (threads), each running the real ctr: containers create, tasks start -d, tasks kill -s
KILL, tasks rm -f, containers rm, for M containers each. Reported per daemon: containers per
second, latency percentiles per step, and the daemon's file descriptors and RSS before and after.
The runtime is given with ``--runtime`` (default: Debian's Go shim on both sides, like for like).

    sudo .venv/bin/python bench/load.py --clients 20 --containers 200
    sudo .venv/bin/python bench/load.py --runtime io.containerd.runc.v2   # each daemon's default shim
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import CONTAINERD, CTR, Daemon, _image, containerd_argv, pycontainerd_argv

REF = "docker.io/library/busybox:bench"  # the ref compare._image builds
GO_SHIM = "/usr/bin/containerd-shim-runc-v2"


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def churn(d: Daemon, clients: int, per_client: int, runtime: str) -> dict[str, object]:
    d.reset()
    d.start()
    assert d.proc is not None
    image = _image(Path("/tmp/bench-busybox.tar"))
    assert d.ctr("images", "import", str(image)).returncode == 0
    assert d.ctr("run", "--rm", "--runtime", runtime, REF, "warm", "true").returncode == 0
    fds0, rss0 = _fds(d.proc.pid), _rss_mib(d.proc.pid)
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    lock = threading.Lock()

    def step(name: str, *args: str) -> bool:
        started = time.perf_counter()
        res = subprocess.run(
            [CTR, "-a", str(d.sock), "-n", "bench", *args], capture_output=True, timeout=300, check=False
        )
        with lock:
            if res.returncode != 0:
                errors.append(f"{name}: {res.stderr.decode(errors='replace').strip()}")
                return False
            latencies[name].append(time.perf_counter() - started)
        return True

    def client(index: int) -> None:
        for n in range(per_client):
            cid = f"l{index}-{n}"
            _ = (
                step("create", "containers", "create", "--runtime", runtime, REF, cid, "sleep", "600")
                and step("start", "tasks", "start", "-d", cid)
                and step("kill", "tasks", "kill", "-s", "KILL", cid)
                and step("delete", "tasks", "rm", "-f", cid)
                and step("remove", "containers", "rm", cid)
            )

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    time.sleep(1)
    report: dict[str, object] = {
        "containers": len(latencies["remove"]),
        "errors": errors[:5],
        "containers_per_second": round(len(latencies["remove"]) / wall, 2),
        "fds": [fds0, _fds(d.proc.pid)],
        "rss_mib": [round(rss0, 1), round(_rss_mib(d.proc.pid), 1)],
        "latency_ms": {
            name: {
                "p50": round(statistics.median(v) * 1000, 1),
                "p90": round(_percentile(v, 90) * 1000, 1),
                "p99": round(_percentile(v, 99) * 1000, 1),
            }
            for name, v in latencies.items()
        },
    }
    d.stop()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--containers", type=int, default=200, help="in all, split between the clients")
    parser.add_argument("--runtime", default=GO_SHIM, help="ctr --runtime for every container")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    daemons = [Daemon("pycontainerd", pycontainerd_argv)]
    if CONTAINERD:
        daemons.append(Daemon("containerd", containerd_argv))
    results = {}
    try:
        for d in daemons:
            results[d.name] = churn(d, args.clients, args.containers // args.clients, args.runtime)
            print(d.name, json.dumps(results[d.name]), flush=True)
    finally:
        for d in daemons:
            d.reset()
    if len(results) == 2:
        a, b = results["pycontainerd"], results["containerd"]
        print(
            f"throughput ratio pycontainerd/containerd: {a['containers_per_second'] / b['containers_per_second']:.2f}"
        )  # type: ignore[operator]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
