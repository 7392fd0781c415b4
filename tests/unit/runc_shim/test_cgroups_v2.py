"""cgroup v2 task metrics read from a fake unified cgroup directory."""

from __future__ import annotations

from pathlib import Path

from pycontainerd.runc_shim.cgroups_v2 import MAX, metrics_from_dir

FILES = {
    "cgroup.controllers": "cpu io memory pids hugetlb rdma\n",
    "pids.current": "7\n",
    "pids.max": "max\n",
    "cpu.stat": "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 10\nnr_throttled 2\n"
    "throttled_usec 3000\n",
    "memory.current": "1048576\n",
    "memory.max": "67108864\n",
    "memory.swap.current": "0\n",
    "memory.swap.max": "max\n",
    "memory.stat": "anon 524288\nfile 262144\nkernel_stack 16384\nslab 8192\nsock 0\nshmem 4096\n"
    "file_mapped 1024\npgfault 3300\npgmajfault 5\nactive_anon 500000\ninactive_file 200000\n"
    "some_future_key 99\n",
    "memory.events": "low 0\nhigh 1\nmax 2\noom 3\noom_kill 1\n",
    "io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n253:1 rbytes=10 wbytes=20 rios=3 wios=4\n",
    "hugetlb.2MB.current": "0\n",
    "hugetlb.2MB.max": "max\n",
    "hugetlb.1GB.current": "1073741824\n",
    "hugetlb.1GB.max": "2147483648\n",
    "rdma.current": "mlx4_0 hca_handle=2 hca_object=2000\n",
    "rdma.max": "mlx4_0 hca_handle=max hca_object=10000\n",
}


def test_unified_metrics(tmp_path: Path) -> None:
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    m = metrics_from_dir(str(tmp_path))
    assert (m.pids.current, m.pids.limit) == (7, MAX)
    assert (m.cpu.usage_usec, m.cpu.user_usec, m.cpu.system_usec) == (123456, 100000, 23456)
    assert (m.cpu.nr_periods, m.cpu.nr_throttled, m.cpu.throttled_usec) == (10, 2, 3000)
    assert (m.memory.usage, m.memory.usage_limit, m.memory.swap_usage, m.memory.swap_limit) == (
        1048576,
        67108864,
        0,
        MAX,
    )
    assert (m.memory.anon, m.memory.file, m.memory.pgmajfault, m.memory.active_anon) == (524288, 262144, 5, 500000)
    assert (m.memory_events.high, m.memory_events.oom, m.memory_events.oom_kill) == (1, 3, 1)
    io = {(e.major, e.minor): (e.rbytes, e.wbytes, e.rios, e.wios) for e in m.io.usage}
    assert io == {(8, 0): (4096, 8192, 1, 2), (253, 1): (10, 20, 3, 4)}
    huge = {h.pagesize: (h.current, h.max) for h in m.hugetlb}
    assert huge == {"1GB": (1073741824, 2147483648), "2MB": (0, MAX)}
    assert [(r.device, r.hca_handles, r.hca_objects) for r in m.rdma.current] == [("mlx4_0", 2, 2000)]
    assert m.rdma.limit[0].hca_objects == 10000
    # The bytes decode as the type URL says (what ctr tasks metrics does).
    from pycontainerd.api.containerd.cgroups.v2 import metrics_pb2

    assert metrics_pb2.Metrics.FromString(m.SerializeToString()).memory.usage == 1048576


def test_missing_files_are_zero(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("memory\n")
    (tmp_path / "memory.current").write_text("42\n")
    m = metrics_from_dir(str(tmp_path))
    assert m.memory.usage == 42 and m.pids.current == 0 and not m.io.usage
