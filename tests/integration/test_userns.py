"""User namespaces end to end: Debian's ``ctr run --uidmap`` (its own chown copy, and with
``--remap-labels`` our ID-mapped layers), ``pyctr run --uidmap`` (ID-mapped on overlayfs, a cached
chown copy on native) and a CRI pod with ``userns_options``.

For each: ``id`` says 0 inside, the process runs as the mapped IDs on the host (``uid_map``,
``status``), the image's files look root-owned inside, what the container writes lands with the
mapped IDs in its upper layer, the image's layers are still owned by root afterwards, and no
mount (ID-mapped clones included) is left behind.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.snapshots import remap
from pycontainerd.snapshots.idmap import IDMap, IDRange
from pycontainerd.tools.busybox import build_image
from tests.support.cri import container_config, cri_client, pod_config
from tests.support.daemon import DaemonProcess, private_dir, running_daemon

pytestmark = [pytest.mark.root, pytest.mark.integration]

NS = "userns"
REF = "docker.io/library/busybox:latest"
SIZE = 65536
PYRUNC = "io.containerd.pyrunc.v2"
GO_RUNC = "io.containerd.runc.v2"  # Debian's Go shim in the tests' config


def _owned_by_root(path: str) -> list[str]:
    """Entries under ``path`` (itself included) NOT owned by 0:0."""
    bad = []
    for top, dirs, files in os.walk(path):
        for name in [top, *(os.path.join(top, n) for n in dirs + files)]:
            st = os.lstat(name)
            if (st.st_uid, st.st_gid) != (0, 0):
                bad.append(name)
    return bad


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if str(path) in line.split()[4]]


def _wait_for(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _host_ids(pid: int, host: int) -> None:
    """The process runs as the mapped root on the host."""
    uid_map = Path(f"/proc/{pid}/uid_map").read_text().split()
    gid_map = Path(f"/proc/{pid}/gid_map").read_text().split()
    assert uid_map == gid_map == ["0", str(host), str(SIZE)]
    status = Path(f"/proc/{pid}/status").read_text()
    uids = re.search(r"^Uid:\s+(.*)$", status, re.M)
    gids = re.search(r"^Gid:\s+(.*)$", status, re.M)
    assert uids is not None and gids is not None
    assert uids.group(1).split() == gids.group(1).split() == [str(host)] * 4
    assert host >= 100000


def _overlay_dirs(d: DaemonProcess, key: str, namespace: str = NS) -> tuple[str, list[str]]:
    """(upperdir, lowerdirs) of an active overlay snapshot, as ``ctr snapshots mounts`` shows them."""
    out = d.ctr("snapshots", "mounts", "/mnt", key, namespace=namespace).stdout
    options = out.split(" -o ", 1)[1].split()[0].split(",")
    upper = next(o.split("=", 1)[1] for o in options if o.startswith("upperdir="))
    lowers = next(o.split("=", 1)[1] for o in options if o.startswith("lowerdir=")).split(":")
    assert not any(o.startswith(("uidmap=", "gidmap=")) for o in options)  # never to clients
    return upper, lowers


def _task_pid(d: DaemonProcess, cid: str) -> int:
    for line in d.ctr("tasks", "ls", namespace=NS).stdout.splitlines()[1:]:
        fields = line.split()
        if fields[0] == cid:
            return int(fields[1])
    raise AssertionError(f"no task {cid}")


def _exec(d: DaemonProcess, cid: str, *cmd: str) -> str:
    return d.ctr("tasks", "exec", "--exec-id", secrets.token_hex(4), cid, *cmd, namespace=NS).stdout


def _inside(d: DaemonProcess, cid: str) -> None:
    """Root inside, the image root-owned inside, and the container's root can write."""
    assert _exec(d, cid, "id", "-u").strip() == "0"
    assert _exec(d, cid, "id", "-g").strip() == "0"
    assert _exec(d, cid, "stat", "-c", "%u:%g", "/bin/busybox", "/etc/passwd", "/").split() == ["0:0"] * 3
    _exec(d, cid, "sh", "-c", "echo hi > /written && mkdir /made && echo x > /etc/passwd-new && echo ok > /dev/stdout")


@pytest.fixture(scope="module")
def module_daemon() -> Iterator[DaemonProcess]:
    with running_daemon() as d, private_dir("img-") as base:
        # As /run/pycontainerd (0711): a user namespace's root must reach the bundles.
        os.chmod(d.base, 0o711)
        image = build_image(base / "busybox.tar", extra_layers=1, files_per_layer=50)
        d.ctr("images", "import", str(image.path), namespace=NS)
        _pyctr(d, "images", "import", "--snapshotter", "native", str(image.path))
        yield d


@pytest.fixture
def daemon(module_daemon: DaemonProcess) -> Iterator[DaemonProcess]:
    """The module's daemon; afterwards no container, task, bundle or mount is left."""
    yield module_daemon
    d = module_daemon
    containers = d.ctr("containers", "ls", "-q", namespace=NS).stdout.split()
    for cid in containers:
        d.ctr("tasks", "kill", "-s", "SIGKILL", cid, namespace=NS, check=False)
    _wait_for(lambda: "RUNNING" not in d.ctr("tasks", "ls", namespace=NS).stdout)
    for cid in containers:
        d.ctr("tasks", "rm", "-f", cid, namespace=NS, check=False)
        d.ctr("containers", "rm", cid, namespace=NS, check=False)
    assert _mounts_under(d.base) == []
    tasks = d.state / "io.containerd.runtime.v2.task" / NS
    assert not tasks.exists() or list(tasks.iterdir()) == []


def _run_detached(d: DaemonProcess, cid: str, *flags: str, snapshotter: str = "") -> None:
    extra = ["--snapshotter", snapshotter] if snapshotter else []
    d.ctr("run", "-d", *extra, *flags, REF, cid, "sleep", "600", namespace=NS)


@pytest.mark.parametrize("runtime", [PYRUNC, GO_RUNC])
def test_ctr_remap_labels_idmaps_the_layers(daemon: DaemonProcess, runtime: str) -> None:
    host = 100000
    maps = ["--uidmap", f"0:{host}:{SIZE}", "--gidmap", f"0:{host}:{SIZE}"]
    _run_detached(daemon, "labels", "--runtime", runtime, "--remap-labels", *maps)
    _host_ids(_task_pid(daemon, "labels"), host)
    _inside(daemon, "labels")
    upper, lowers = _overlay_dirs(daemon, "labels")
    assert len(lowers) == 2
    for name in ("written", "made", "etc/passwd-new", "etc"):
        st = os.lstat(os.path.join(upper, name))
        assert (st.st_uid, st.st_gid) == (host, host), name
    assert (os.stat(upper).st_uid, os.stat(upper).st_gid) == (host, host)
    # ID-mapped: the shared layers were not copied, nor chowned; nor are they after the run.
    for lower in lowers:
        assert _owned_by_root(lower) == []
    keys = daemon.ctr("snapshots", "ls", namespace=NS).stdout
    assert f"-{host}-{host}" not in keys and "sha256:" in keys
    daemon.ctr("tasks", "kill", "-s", "SIGKILL", "labels", namespace=NS)
    _wait_for(lambda: "RUNNING" not in daemon.ctr("tasks", "ls", namespace=NS).stdout)
    daemon.ctr("tasks", "rm", "labels", namespace=NS)
    daemon.ctr("containers", "rm", "labels", namespace=NS)
    for lower in lowers:
        assert _owned_by_root(lower) == []


@pytest.mark.parametrize("runtime", [PYRUNC, GO_RUNC])
def test_ctr_uidmap_runs_on_ctrs_chown_copy(daemon: DaemonProcess, runtime: str) -> None:
    host = 110000
    maps = ["--uidmap", f"0:{host}:{SIZE}", "--gidmap", f"0:{host}:{SIZE}"]
    _run_detached(daemon, "chowned", "--runtime", runtime, *maps)
    _host_ids(_task_pid(daemon, "chowned"), host)
    _inside(daemon, "chowned")
    upper, lowers = _overlay_dirs(daemon, "chowned")
    assert os.stat(os.path.join(upper, "written")).st_uid == host
    # ctr 1.6 copied the image into <chain>-<uid>-<gid> with shifted owners; the image's own
    # layers (the last lowerdirs) are untouched.
    assert os.stat(lowers[0]).st_uid == host
    for lower in lowers[1:]:
        assert _owned_by_root(lower) == []


def test_ctr_uidmap_run_rm_streams_output(daemon: DaemonProcess) -> None:
    # Through ctr's FIFOs and our shim's pipes, owned by the mapped root (IoUid/IoGid).
    maps = ["--uidmap", f"0:120000:{SIZE}", "--gidmap", f"0:120000:{SIZE}", "--remap-labels"]
    out = daemon.ctr("run", "--rm", *maps, REF, "rm1", "sh", "-c", "id -u; echo hi > /dev/stdout", namespace=NS)
    assert out.stdout.split() == ["0", "hi"]


def _pyctr(d: DaemonProcess, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pycontainerd.cli.main", "-a", str(d.address), "-n", NS, *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if ok and result.returncode != 0:
        raise AssertionError(f"pyctr {' '.join(args)}: {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def test_pyctr_uidmap_on_overlayfs(daemon: DaemonProcess) -> None:
    host = 130000
    # Our shim here (the native test below goes through Debian's Go shim, the daemon mounting for it).
    _pyctr(daemon, "run", "-d", "--runtime", PYRUNC, "--uidmap", f"0:{host}:{SIZE}", REF, "py1", "sleep", "600")
    info = json.loads(daemon.ctr("containers", "info", "py1", namespace=NS).stdout)
    assert info["Spec"]["linux"]["uidMappings"] == [{"containerID": 0, "hostID": host, "size": SIZE}]
    _host_ids(_task_pid(daemon, "py1"), host)
    _inside(daemon, "py1")
    upper, lowers = _overlay_dirs(daemon, "py1")
    assert os.stat(os.path.join(upper, "written")).st_gid == host
    for lower in lowers:
        assert _owned_by_root(lower) == []
    run = _pyctr(
        daemon,
        "run",
        "--rm",
        "--runtime",
        PYRUNC,
        "--uidmap",
        f"0:{host}:{SIZE}",
        REF,
        "py2",
        "sh",
        "-c",
        "id -u >/dev/stdout",
    )
    assert run.stdout.strip() == "0"


def _native_dirs(d: DaemonProcess) -> dict[str, tuple[int, int]]:
    """Each native snapshot directory and the owner of its root."""
    base = d.root / "io.containerd.snapshotter.v1.native" / "snapshots"
    return {p.name: (p.stat().st_uid, p.stat().st_gid) for p in base.iterdir()}


def _snapshot_info(d: DaemonProcess, key: str) -> dict[str, object]:
    info: dict[str, object] = json.loads(
        d.ctr("snapshots", "--snapshotter", "native", "info", key, namespace=NS).stdout
    )
    return info


def test_pyctr_uidmap_on_native_uses_a_cached_chown_copy(daemon: DaemonProcess) -> None:
    host = 140000
    mapping = IDMap((IDRange(0, host, SIZE),), (IDRange(0, host, SIZE),))
    flags = ["--snapshotter", "native", "--uidmap", f"0:{host}:{SIZE}"]
    _pyctr(daemon, "run", "-d", *flags, REF, "nat1", "sleep", "600")
    _host_ids(_task_pid(daemon, "nat1"), host)
    _inside(daemon, "nat1")
    # The container's parent is the chown-remapped copy of the image, under containerd 2.x's key,
    # and the image's snapshot keeps it (a gc.ref label) for the next container.
    copy = str(_snapshot_info(daemon, "nat1")["Parent"])
    image = str(_snapshot_info(daemon, copy)["Parent"])
    assert copy == remap.remapped_snapshot_key(image, mapping)
    name, value = remap.keep_label("native", copy)
    labels = _snapshot_info(daemon, image)["Labels"]
    assert isinstance(labels, dict) and labels[name] == value
    owners = _native_dirs(daemon)
    # The image's two layers stay root's; the copy and the container's snapshot are the mapped root's.
    assert sorted(owners.values()) == [(0, 0), (0, 0), (host, host), (host, host)]
    for name, owner in owners.items():
        if owner == (0, 0):
            assert _owned_by_root(str(daemon.root / "io.containerd.snapshotter.v1.native/snapshots" / name)) == []
    # A second container with the same mapping reuses the copy: no new snapshot but its own.

    def keys() -> set[str]:
        listing = daemon.ctr("snapshots", "--snapshotter", "native", "ls", namespace=NS).stdout
        return {line.split()[0] for line in listing.splitlines()[1:]}

    before = keys()
    _pyctr(daemon, "run", "-d", *flags, REF, "nat2", "sleep", "600")
    assert keys() == {*before, "nat2"}
    assert str(_snapshot_info(daemon, "nat2")["Parent"]) == copy
    # Without the fallback (--remap-labels) a snapshotter without remap-ids is refused.
    refused = _pyctr(daemon, "run", "--rm", "--remap-labels", *flags, REF, "nat3", "true", ok=False)
    assert refused.returncode != 0 and "remap-ids" in refused.stderr


# -- a CRI pod with userns_options --------------------------------------------------------------

CRI_REF = "docker.io/library/busybox:cri"
POD_HOST = 200000


def _cri_extra(tmp: Path, bridge: str, snapshotter: str) -> str:
    from tests.integration.test_cri import cni_config

    subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}.0/24"
    cni_config(tmp / "net.d", bridge, subnet, tmp / "ipam")
    return f"""
[plugins."io.containerd.grpc.v1.cri"]
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{snapshotter}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    conf_dir = "{tmp / "net.d"}"
    bin_dirs = ["/usr/lib/cni"]
"""


@pytest.fixture(params=["overlayfs", "native"])
def cri_daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DaemonProcess]:
    bridge = f"pyu{secrets.token_hex(4)}"
    try:
        with running_daemon(extra_config=_cri_extra(tmp_path, bridge, request.param), go_shim=False) as d:
            os.chmod(d.base, 0o711)
            image = build_image(tmp_path / "busybox.tar", ref=CRI_REF, extra_layers=1, files_per_layer=20)
            d.ctr("images", "import", "--snapshotter", request.param, str(image.path), namespace="k8s.io")
            d.snapshotter = request.param  # type: ignore[attr-defined]
            try:
                yield d
            finally:
                from tests.integration.test_cri import remove_all_pods

                remove_all_pods(d)
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False, timeout=30)


def _userns_pod(host_network: bool = False) -> api.PodSandboxConfig:
    pod = pod_config(host_network=host_network)
    opts = pod.linux.security_context.namespace_options.userns_options
    opts.mode = api.POD
    opts.uids.add(container_id=0, host_id=POD_HOST, length=SIZE)
    opts.gids.add(container_id=0, host_id=POD_HOST, length=SIZE)
    return pod


def test_cri_pod_with_a_user_namespace(cri_daemon: DaemonProcess, tmp_path: Path) -> None:
    d = cri_daemon
    volume = tmp_path / "empty-dir"  # kubelet's emptyDir: made by kubelet, owned by root
    volume.mkdir()
    with cri_client(str(d.address)) as cri:
        pod = _userns_pod()
        pod_id = cri.run_pod(pod)
        status = cri.pod_status(pod_id, verbose=True)
        assert status.status.state == api.SANDBOX_READY
        assert re.fullmatch(r"10\.\d+\.\d+\.\d+", status.status.network.ip)
        _host_ids(json.loads(status.info["info"])["pid"], POD_HOST)

        config = container_config("app", CRI_REF, "sleep", "600")
        config.linux.security_context.namespace_options.CopyFrom(pod.linux.security_context.namespace_options)
        mount = config.mounts.add(container_path="/data", host_path=str(volume))
        # As kubelet asks for a pod with a user namespace: an ID-mapped volume.
        mount.uidMappings.add(container_id=0, host_id=POD_HOST, length=SIZE)
        mount.gidMappings.add(container_id=0, host_id=POD_HOST, length=SIZE)
        cid = cri.create(pod_id, config, pod)
        cri.start(cid)
        _host_ids(_cri_pid(cri, cid), POD_HOST)

        def run(*cmd: str) -> str:
            reply = cri.exec_sync(cid, *cmd)
            assert reply.exit_code == 0, reply.stderr
            return reply.stdout.decode()

        assert run("id", "-u").strip() == run("id", "-g").strip() == "0"
        assert run("stat", "-c", "%u:%g", "/bin/busybox", "/etc/passwd", "/etc/hosts", "/data").split() == ["0:0"] * 4
        run("sh", "-c", "echo hi > /written && echo '10.0.0.9 extra' >> /etc/hosts && echo v > /data/file")
        assert "10.0.0.9 extra" in run("cat", "/etc/hosts")
        # The volume and the pod's files are ID-mapped, not chowned: stored as host root.
        assert (volume / "file").stat().st_uid == 0 and volume.stat().st_uid == 0
        assert any(line.endswith("/idmapped/0") for line in _mounts_under(d.state))

        if d.snapshotter == "overlayfs":  # type: ignore[attr-defined]
            upper, lowers = _overlay_dirs(d, cid, namespace="k8s.io")
            st = os.stat(os.path.join(upper, "written"))
            assert (st.st_uid, st.st_gid) == (POD_HOST, POD_HOST)
            for lower in lowers:
                assert _owned_by_root(lower) == []
        else:
            base = d.root / "io.containerd.snapshotter.v1.native" / "snapshots"
            owners = sorted((p.stat().st_uid, p.stat().st_gid) for p in base.iterdir())
            # The image's two layers, its chown copy for the pod's mapping, the container's.
            assert owners == [(0, 0), (0, 0), (POD_HOST, POD_HOST), (POD_HOST, POD_HOST)]
            written = [p / "written" for p in base.iterdir() if (p / "written").exists()]
            assert len(written) == 1 and written[0].stat().st_uid == POD_HOST

        cri.runtime.StopContainer(api.StopContainerRequest(container_id=cid, timeout=1), timeout=60)
        cri.runtime.RemoveContainer(api.RemoveContainerRequest(container_id=cid), timeout=60)
        cri.stop_pod(pod_id)
        cri.remove_pod(pod_id)
    if d.snapshotter == "overlayfs":  # type: ignore[attr-defined]
        for lower in lowers:  # the image's layers, after the run
            assert _owned_by_root(lower) == []
    cri_state = d.state / "io.containerd.grpc.v1.cri"
    for pins in ("netns", "userns"):
        assert not (cri_state / pins).exists() or list((cri_state / pins).iterdir()) == []
    assert _mounts_under(d.base) == []


@pytest.mark.parametrize("cri_daemon", ["overlayfs"], indirect=True)
def test_cri_host_network_pod_with_a_user_namespace(cri_daemon: DaemonProcess) -> None:
    with cri_client(str(cri_daemon.address)) as cri:
        pod = _userns_pod(host_network=True)
        pod_id = cri.run_pod(pod)
        config = container_config("app", CRI_REF, "sleep", "600")
        config.linux.security_context.namespace_options.CopyFrom(pod.linux.security_context.namespace_options)
        cid = cri.create(pod_id, config, pod)
        cri.start(cid)
        _host_ids(_cri_pid(cri, cid), POD_HOST)
        reply = cri.exec_sync(cid, "sh", "-c", "id -u; readlink /proc/self/ns/net; touch /x")
        assert reply.exit_code == 0, reply.stderr
        uid, net = reply.stdout.decode().split()
        assert uid == "0" and net == os.readlink("/proc/self/ns/net")  # the host's network
        cri.stop_pod(pod_id)
        cri.remove_pod(pod_id)
    assert _mounts_under(cri_daemon.base) == []


def _cri_pid(cri: object, cid: str) -> int:
    status = cri.container_status(cid, verbose=True)  # type: ignore[attr-defined]
    return int(json.loads(status.info["info"])["pid"])
