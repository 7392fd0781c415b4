"""The CRI driven over gRPC as kubelet drives it: a pod with two containers, exec, port-forward,
hostPort, logs, stats, error codes, v1alpha2, restart recovery, and a clean host afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.tools.busybox import build_image
from tests.support.cri import container_config, cri_client, pod_config
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.registry import Registry, free_port, running_registry

pytestmark = [pytest.mark.integration, pytest.mark.root]

LOCAL = "docker.io/library/busybox:cri"


def _push_image(registry: Registry, tmp: Path) -> str:
    """Build the busybox image and push it to the test registry with pyctr (through a throwaway daemon)."""
    archive = build_image(tmp / "busybox.tar", ref=LOCAL)
    remote = f"{registry.host}/library/busybox:cri"
    with running_daemon() as d:
        d.ctr("images", "import", str(archive.path), namespace="push")
        from tests.integration.test_transfer_registry import push

        push(d, "push", remote, LOCAL)
    return remote


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with running_registry() as r:
        yield r


@pytest.fixture(scope="module")
def remote_image(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    return _push_image(registry, tmp_path_factory.mktemp("cri-img"))


def cni_config(conf_dir: Path, bridge: str, subnet: str, data_dir: Path) -> None:
    conf_dir.mkdir(parents=True, exist_ok=True)
    conflist = {
        "cniVersion": "1.0.0",
        "name": "pyc-test",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(data_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }
    (conf_dir / "10-test.conflist").write_text(json.dumps(conflist))


def _iptables_rules() -> set[str]:
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False, timeout=30).stdout
    return {line for line in out.splitlines() if line and not line.startswith(("#", ":"))}


@pytest.fixture
def cri_daemon(tmp_path: Path, registry: Registry) -> Iterator[DaemonProcess]:
    bridge = f"pyc{secrets.token_hex(4)}"
    subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}.0/24"
    conf_dir = tmp_path / "net.d"
    cni_config(conf_dir, bridge, subnet, tmp_path / "ipam")
    hosts = tmp_path / "hosts.d" / registry.host
    hosts.mkdir(parents=True)
    (hosts / "hosts.toml").write_text(f'server = "http://{registry.host}"\n')
    extra = f"""
[plugins."io.containerd.grpc.v1.cri"]
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.podshim]
    runtime_type = "io.containerd.runc.v2"
    sandboxer = "shim"
  [plugins."io.containerd.grpc.v1.cri".cni]
    conf_dir = "{conf_dir}"
    bin_dirs = ["/usr/lib/cni"]
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{tmp_path / "hosts.d"}"
"""
    before = _iptables_rules()
    try:
        with running_daemon(extra_config=extra, go_shim=False) as d:
            d.bridge = bridge  # type: ignore[attr-defined]
            d.iptables_before = before  # type: ignore[attr-defined]
            try:
                yield d
            finally:
                remove_all_pods(d)
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False, timeout=30)


def remove_all_pods(d: DaemonProcess) -> None:
    """Stop and remove every pod a test left (a failing test must not leak processes or netns)."""
    if d.proc is None or d.proc.poll() is not None:
        return
    with cri_client(str(d.address)) as cri:
        for pod in cri.runtime.ListPodSandbox(api.ListPodSandboxRequest(), timeout=60).items:
            try:
                cri.stop_pod(pod.id)
                cri.remove_pod(pod.id)
            except grpc.RpcError:
                pass


def _netns_files(d: DaemonProcess) -> list[Path]:
    netns = d.state / "io.containerd.grpc.v1.cri" / "netns"
    return sorted(netns.iterdir()) if netns.is_dir() else []


def _mounts_under(path: Path) -> list[str]:
    text = Path("/proc/self/mountinfo").read_text()
    return [line for line in text.splitlines() if str(path) in line]


def _wait_for(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_pod_with_two_containers_end_to_end(cri_daemon: DaemonProcess, remote_image: str, tmp_path: Path) -> None:
    d = cri_daemon
    host_port = free_port()
    logs = tmp_path / "logs"
    with cri_client(str(d.address)) as cri:
        image_id = cri.pull(remote_image)
        assert image_id.startswith("sha256:")
        status = cri.images.ImageStatus(api.ImageStatusRequest(image=api.ImageSpec(image=remote_image)))
        assert status.image.id == image_id
        assert remote_image in status.image.repo_tags

        dns = api.DNSConfig(servers=["10.96.0.10"], searches=["svc.cluster.local"], options=["ndots:5"])
        pod = pod_config(log_directory=str(logs), port_mappings=[(host_port, 80)], hostname="web-0", dns=dns)
        pod_id = cri.run_pod(pod)
        pod_status = cri.pod_status(pod_id, verbose=True)
        assert pod_status.status.state == api.SANDBOX_READY
        pod_ip = pod_status.status.network.ip
        assert re.fullmatch(r"10\.\d+\.\d+\.\d+", pod_ip)
        netns = _netns_files(d)
        assert len(netns) == 1
        info = json.loads(pod_status.info["info"])
        pause_pid = info["pid"]
        assert Path(f"/proc/{pause_pid}").exists()

        web = container_config(
            "web",
            remote_image,
            "/bin/sh",
            "-c",
            "mkdir -p /www && echo hello-from-pod > /www/index.html && echo started; "
            "exec /bin/busybox httpd -f -p 80 -h /www",
            log_path="web/0.log",
        )
        sidecar = container_config("sidecar", remote_image, "/bin/sh", "-c", "echo out; echo err >&2; exec sleep 3600")
        sidecar.log_path = "sidecar/0.log"
        web_id = cri.create(pod_id, web, pod)
        side_id = cri.create(pod_id, sidecar, pod)
        cri.start(web_id)
        cri.start(side_id)
        assert cri.container_status(web_id).status.state == api.CONTAINER_RUNNING

        # ExecSync: hostname, DNS, exit codes, the shared network namespace.
        assert cri.exec_sync(web_id, "cat", "/etc/hostname").stdout.strip() == b"web-0"
        resolv = cri.exec_sync(side_id, "cat", "/etc/resolv.conf").stdout.decode()
        assert "nameserver 10.96.0.10" in resolv and "search svc.cluster.local" in resolv and "ndots:5" in resolv
        failed = cri.exec_sync(side_id, "sh", "-c", "echo oops >&2; exit 3")
        assert (failed.exit_code, failed.stderr) == (3, b"oops\n")
        web_net = cri.exec_sync(web_id, "readlink", "/proc/self/ns/net").stdout
        assert web_net == cri.exec_sync(side_id, "readlink", "/proc/self/ns/net").stdout

        # The web server, three ways: from the sidecar over the pod's loopback, the hostPort on
        # 127.0.0.1, and the pod IP from the host.
        fetch = ["sh", "-c", "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 127.0.0.1 80"]
        _wait_for(lambda: cri.exec_sync(side_id, *fetch).stdout.endswith(b"hello-from-pod\n"))
        with urllib.request.urlopen(f"http://127.0.0.1:{host_port}/index.html", timeout=10) as reply:
            assert reply.read() == b"hello-from-pod\n"
        with urllib.request.urlopen(f"http://{pod_ip}/index.html", timeout=10) as reply:
            assert reply.read() == b"hello-from-pod\n"

        # Exec and port-forward through the streaming server, as kubectl does.
        from tests.support import k8s_stream_client as stream

        spdy_reply = b""
        for protocol in ("spdy", "websocket"):
            request = api.ExecRequest(
                container_id=side_id,
                cmd=["sh", "-c", "cat; echo done >&2; exit 7"],
                stdin=True,
                stdout=True,
                stderr=True,
            )
            url = cri.runtime.Exec(request).url
            code, out, err = asyncio.run(stream.exec_via_url(url, stdin=b"piped\n", protocol=protocol))
            assert (code, out, err) == (7, b"piped\n", b"done\n"), protocol
            url = cri.runtime.PortForward(api.PortForwardRequest(pod_sandbox_id=pod_id, port=[80])).url
            get = b"GET /index.html HTTP/1.0\r\n\r\n"
            # Websocket channels cannot half-close: read as much as the SPDY answer held.
            expect = {"expect": len(spdy_reply)} if protocol == "websocket" else {}
            got = asyncio.run(stream.port_forward_via_url(url, 80, get, protocol=protocol, **expect))
            assert got.startswith(b"HTTP/1.") and got.endswith(b"hello-from-pod\n"), protocol
            spdy_reply = got
        # A used URL is gone.
        with pytest.raises(Exception, match="404"):
            asyncio.run(stream.exec_via_url(url, protocol="spdy"))

        # Logs in the CRI format, and a reopen after kubelet rotates the file.
        side_log = logs / "sidecar" / "0.log"
        _wait_for(lambda: side_log.exists() and b"stderr F err" in side_log.read_bytes())
        lines = side_log.read_bytes().splitlines()
        assert any(re.fullmatch(rb"\S+Z stdout F out", line) for line in lines)
        web_log = logs / "web" / "0.log"
        _wait_for(lambda: web_log.exists() and b"stdout F started" in web_log.read_bytes())
        web_log.rename(logs / "web" / "0.log.1")
        cri.runtime.ReopenContainerLog(api.ReopenContainerLogRequest(container_id=web_id))
        assert web_log.exists()

        # Stats.
        stats = cri.runtime.ContainerStats(api.ContainerStatsRequest(container_id=side_id)).stats
        assert stats.cpu.usage_core_nano_seconds.value > 0
        assert stats.memory.working_set_bytes.value > 0
        assert stats.writable_layer.used_bytes.value >= 0
        listed = cri.runtime.ListContainerStats(api.ListContainerStatsRequest()).stats
        assert {s.attributes.id for s in listed} == {web_id, side_id}
        pod_stats = cri.runtime.PodSandboxStats(api.PodSandboxStatsRequest(pod_sandbox_id=pod_id)).stats
        assert len(pod_stats.linux.containers) == 2
        streamed = [
            c.id for page in cri.runtime.StreamContainers(api.StreamContainersRequest()) for c in page.containers
        ]
        assert sorted(streamed) == sorted([web_id, side_id])
        names = {d.name for d in cri.runtime.ListMetricDescriptors(api.ListMetricDescriptorsRequest()).descriptors}
        assert "container_memory_working_set_bytes" in names
        metrics = cri.runtime.ListPodSandboxMetrics(api.ListPodSandboxMetricsRequest()).pod_metrics
        (pod_metrics,) = [m for m in metrics if m.pod_sandbox_id == pod_id]
        working_set = {
            cm.container_id: m.value.value
            for cm in pod_metrics.container_metrics
            for m in cm.metrics
            if m.name == "container_memory_working_set_bytes"
        }
        assert set(working_set) == {web_id, side_id} and all(v > 0 for v in working_set.values())
        assert cri.runtime.ListContainers(
            api.ListContainersRequest(filter=api.ContainerFilter(pod_sandbox_id=pod_id))
        ).containers

        # Stop (the web container ignores nothing: SIGTERM ends httpd), then the pod.
        cri.runtime.StopContainer(api.StopContainerRequest(container_id=web_id, timeout=10))
        exited = cri.container_status(web_id).status
        assert exited.state == api.CONTAINER_EXITED
        assert exited.finished_at >= exited.started_at > 0
        cri.stop_pod(pod_id)
        assert cri.pod_status(pod_id).status.state == api.SANDBOX_NOTREADY
        assert cri.container_status(side_id).status.state == api.CONTAINER_EXITED
        cri.stop_pod(pod_id)  # idempotent
        cri.remove_pod(pod_id)
        with pytest.raises(grpc.RpcError) as err:
            cri.pod_status(pod_id)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert not cri.runtime.ListContainers(api.ListContainersRequest()).containers

    # Nothing left behind: network namespace, mounts, iptables rules, processes.
    assert _netns_files(d) == []
    assert _mounts_under(d.base) == []
    # portmap's shared CNI-HOSTPORT-* plumbing stays (as with containerd); nothing of this pod may.
    new_rules = _iptables_rules() - d.iptables_before  # type: ignore[attr-defined]
    assert [r for r in new_rules if pod_id in r or pod_ip in r or "CNI-DN-" in r or str(host_port) in r] == []
    assert not Path(f"/proc/{pause_pid}").exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", host_port), timeout=1)


def test_status_codes_kubelet_expects(cri_daemon: DaemonProcess, remote_image: str) -> None:
    with cri_client(str(cri_daemon.address)) as cri:
        missing = "0" * 64

        def code(call: object) -> grpc.StatusCode:
            with pytest.raises(grpc.RpcError) as err:
                call()  # type: ignore[operator]
            return err.value.code()

        assert code(lambda: cri.stop_pod(missing)) == grpc.StatusCode.NOT_FOUND
        assert code(lambda: cri.pod_status(missing)) == grpc.StatusCode.NOT_FOUND
        assert code(lambda: cri.container_status(missing)) == grpc.StatusCode.NOT_FOUND
        assert code(lambda: cri.start(missing)) == grpc.StatusCode.NOT_FOUND
        cri.remove_pod(missing)  # removing what is gone succeeds
        cri.runtime.RemoveContainer(api.RemoveContainerRequest(container_id=missing))
        assert not cri.images.ImageStatus(api.ImageStatusRequest(image=api.ImageSpec(image="nothing:here"))).HasField(
            "image"
        )
        assert code(lambda: cri.run_pod(api.PodSandboxConfig())) == grpc.StatusCode.INVALID_ARGUMENT
        assert code(lambda: cri.run_pod(pod_config(), handler="no-such-handler")) == grpc.StatusCode.NOT_FOUND

        cri.pull(remote_image)
        pod = pod_config(host_network=True)
        pod_id = cri.run_pod(pod)
        try:
            assert code(lambda: cri.run_pod(pod)) == grpc.StatusCode.ALREADY_EXISTS
            ctr = container_config("one", remote_image, "sleep", "60")
            assert code(lambda: cri.create(missing, ctr, pod)) == grpc.StatusCode.NOT_FOUND
            bad_image = container_config("two", "no/such:image", "true")
            assert code(lambda: cri.create(pod_id, bad_image, pod)) == grpc.StatusCode.NOT_FOUND
            cid = cri.create(pod_id, ctr, pod)
            assert code(lambda: cri.create(pod_id, ctr, pod)) == grpc.StatusCode.ALREADY_EXISTS
            assert code(lambda: cri.exec_sync(cid, "true")) == grpc.StatusCode.FAILED_PRECONDITION
            cri.start(cid)
            assert code(lambda: cri.start(cid)) == grpc.StatusCode.FAILED_PRECONDITION
            # UpdateContainerResources reaches the running container's cgroup and its spec.
            limit = 96 * 1024 * 1024
            resources = api.LinuxContainerResources(memory_limit_in_bytes=limit, cpu_shares=512)
            cri.runtime.UpdateContainerResources(api.UpdateContainerResourcesRequest(container_id=cid, linux=resources))
            info = json.loads(cri.container_status(cid, verbose=True).info["info"])
            assert info["runtimeSpec"]["linux"]["resources"]["memory"]["limit"] == limit
            pid = info["pid"]
            memory_cgroup = next(
                line.split(":", 2)[2]
                for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                if ":memory:" in line
            )
            assert int(Path(f"/sys/fs/cgroup/memory{memory_cgroup}/memory.limit_in_bytes").read_text()) == limit
            assert cri.container_status(cid).status.resources.linux.memory_limit_in_bytes == limit
            assert code(lambda: cri.exec_sync(cid, "sleep", "10", timeout=1)) == grpc.StatusCode.DEADLINE_EXCEEDED
            assert code(lambda: cri.exec_sync(cid)) == grpc.StatusCode.INVALID_ARGUMENT
        finally:
            cri.stop_pod(pod_id)
            cri.remove_pod(pod_id)


def test_v1alpha2_answers_like_containerd_1_7(cri_daemon: DaemonProcess) -> None:
    with cri_client(str(cri_daemon.address), "runtime.v1alpha2") as old:
        reply = old.call("RuntimeService", "Version", api.VersionRequest(version="0.1.0"), api.VersionResponse)
        assert reply.runtime_api_version == "v1alpha2"
        assert reply.runtime_name == "containerd"
        status = old.call("RuntimeService", "Status", api.StatusRequest(), api.StatusResponse)
        assert {c.type: c.status for c in status.status.conditions} == {"RuntimeReady": True, "NetworkReady": True}
        assert old.call("ImageService", "ListImages", api.ListImagesRequest(), api.ListImagesResponse) is not None
    with cri_client(str(cri_daemon.address)) as new:
        assert new.runtime.Version(api.VersionRequest()).runtime_api_version == "v1"


def test_v1alpha2_can_be_turned_off() -> None:
    extra = '[plugins."io.containerd.grpc.v1.cri"]\n  disable_v1alpha2 = true\n'
    with running_daemon(extra_config=extra, go_shim=False) as d, cri_client(str(d.address), "runtime.v1alpha2") as old:
        with pytest.raises(grpc.RpcError) as err:
            old.call("RuntimeService", "Version", api.VersionRequest(), api.VersionResponse)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_removed_config_stops_the_daemon(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  systemd_cgroup = true\n')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pycontainerd",
            "--config",
            str(config),
            "--root",
            str(tmp_path / "r"),
            "--state",
            str(tmp_path / "s"),
            "--address",
            str(tmp_path / "s.sock"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "systemd_cgroup" in result.stderr and "SystemdCgroup" in result.stderr


def test_pods_survive_a_daemon_restart(cri_daemon: DaemonProcess, remote_image: str) -> None:
    d = cri_daemon
    with cri_client(str(d.address)) as cri:
        cri.pull(remote_image)
        pod = pod_config()
        pod_id = cri.run_pod(pod)
        cid = cri.create(pod_id, container_config("keep", remote_image, "sleep", "3600"), pod)
        cri.start(cid)
        pid = cri.container_status(cid, verbose=True)
    d.kill()
    d.start()
    with cri_client(str(d.address)) as cri:
        assert cri.pod_status(pod_id).status.state == api.SANDBOX_READY
        status = cri.container_status(cid, verbose=True)
        assert status.status.state == api.CONTAINER_RUNNING
        assert json.loads(status.info["info"])["pid"] == json.loads(pid.info["info"])["pid"]
        assert cri.exec_sync(cid, "echo", "still").stdout == b"still\n"
        cri.runtime.StopContainer(api.StopContainerRequest(container_id=cid, timeout=1))
        assert cri.container_status(cid).status.state == api.CONTAINER_EXITED
        cri.stop_pod(pod_id)
        cri.remove_pod(pod_id)
    assert _netns_files(d) == []
    assert (
        os.listdir(d.state / "io.containerd.grpc.v1.cri" / "io") == []
        if (d.state / "io.containerd.grpc.v1.cri" / "io").exists()
        else True
    )


def test_handler_snapshotter_events_and_checkpoint(tmp_path: Path, remote_image: str, registry: Registry) -> None:
    hosts = tmp_path / "hosts.d" / registry.host
    hosts.mkdir(parents=True)
    (hosts / "hosts.toml").write_text(f'server = "http://{registry.host}"\n')
    extra = f"""
[plugins."io.containerd.grpc.v1.cri"]
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.plain]
    runtime_type = "io.containerd.runc.v2"
    snapshotter = "native"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{tmp_path / "hosts.d"}"
"""
    with running_daemon(extra_config=extra, go_shim=False) as d, cri_client(str(d.address)) as cri:
        events: list[api.ContainerEventResponse] = []
        stream = cri.runtime.GetContainerEvents(api.GetEventsRequest())

        import threading

        def collect() -> None:
            try:
                for event in stream:
                    events.append(event)
            except grpc.RpcError:
                pass

        # No CNI config in this daemon's conf dir: the network is not ready, and says why.
        if not Path("/etc/cni/net.d").is_dir() or not any(Path("/etc/cni/net.d").iterdir()):
            conditions = {c.type: c for c in cri.runtime.Status(api.StatusRequest()).status.conditions}
            assert not conditions["NetworkReady"].status
            assert conditions["NetworkReady"].reason == "NetworkPluginNotReady"
            assert "no network config found" in conditions["NetworkReady"].message
        reader = threading.Thread(target=collect, daemon=True)
        reader.start()
        # Pulled for the handler: unpacked into its snapshotter, not the default one.
        request = api.PullImageRequest(image=api.ImageSpec(image=remote_image, runtime_handler="plain"))
        cri.images.PullImage(request)
        native = d.ctr("snapshots", "--snapshotter", "native", "ls", namespace="k8s.io").stdout
        assert "Committed" in native
        assert "Committed" not in d.ctr("snapshots", "ls", namespace="k8s.io").stdout
        pod = pod_config(host_network=True)
        pod_id = cri.run_pod(pod, handler="plain")
        cid = cri.create(pod_id, container_config("c", remote_image, "sleep", "60"), pod)
        assert "native" in d.ctr("containers", "info", cid, namespace="k8s.io").stdout
        cri.start(cid)
        # Checkpoint needs CRIU; Debian 12's criu cannot dump on this kernel, and the error says so.
        with pytest.raises(grpc.RpcError) as err:
            cri.runtime.CheckpointContainer(
                api.CheckpointContainerRequest(container_id=cid, location=str(tmp_path / "ckpt.tar"))
            )
        assert err.value.code() != grpc.StatusCode.UNIMPLEMENTED
        assert not (tmp_path / "ckpt.tar").exists()
        with pytest.raises(grpc.RpcError) as err:
            cri.runtime.CheckpointContainer(api.CheckpointContainerRequest(container_id=cid, location="relative.tar"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        cri.stop_pod(pod_id)
        cri.remove_pod(pod_id)
        _wait_for(
            lambda: any(
                e.container_event_type == api.CONTAINER_DELETED_EVENT and e.container_id == pod_id for e in events
            )
        )
        stream.cancel()
        kinds = [(e.container_id, e.container_event_type) for e in events]
        assert kinds.index((pod_id, api.CONTAINER_CREATED_EVENT)) < kinds.index((cid, api.CONTAINER_CREATED_EVENT))
        assert kinds.index((cid, api.CONTAINER_STARTED_EVENT)) < kinds.index((cid, api.CONTAINER_STOPPED_EVENT))
        assert kinds.index((cid, api.CONTAINER_STOPPED_EVENT)) < kinds.index((cid, api.CONTAINER_DELETED_EVENT))
        started = next(
            e for e in events if e.container_id == cid and e.container_event_type == api.CONTAINER_STARTED_EVENT
        )
        assert started.pod_sandbox_status.id == pod_id
        assert started.containers_statuses[0].state == api.CONTAINER_RUNNING


def _parent(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def test_shim_sandboxer_runs_a_pod_in_one_shim(cri_daemon: DaemonProcess, remote_image: str) -> None:
    with cri_client(str(cri_daemon.address)) as cri:
        cri.pull(remote_image)
        pod = pod_config()
        pod_id = cri.run_pod(pod, handler="podshim")
        try:
            pause = json.loads(cri.pod_status(pod_id, verbose=True).info["info"])["pid"]
            pids = []
            for name in ("a", "b"):
                cid = cri.create(pod_id, container_config(name, remote_image, "sleep", "3600"), pod)
                cri.start(cid)
                pids.append(json.loads(cri.container_status(cid, verbose=True).info["info"])["pid"])
                assert cri.exec_sync(cid, "hostname").stdout.strip() == pod.hostname.encode()
            assert _parent(pids[0]) == _parent(pids[1]) == _parent(pause)
        finally:
            cri.stop_pod(pod_id)
            cri.remove_pod(pod_id)


def test_attach_with_stdin_once(cri_daemon: DaemonProcess, remote_image: str) -> None:
    from tests.support import k8s_stream_client as stream

    with cri_client(str(cri_daemon.address)) as cri:
        cri.pull(remote_image)
        pod = pod_config()
        pod_id = cri.run_pod(pod)
        try:
            config = container_config("cat", remote_image, "cat", stdin=True)
            config.stdin_once = True
            cid = cri.create(pod_id, config, pod)
            cri.start(cid)
            url = cri.runtime.Attach(api.AttachRequest(container_id=cid, stdin=True, stdout=True, stderr=True)).url
            code, out, _ = asyncio.run(stream.attach_via_url(url, stdin=b"through attach\n", protocol="spdy"))
            assert (code, out) == (0, b"through attach\n")
            # stdin_once: the container's stdin closed with the session, so cat ends.
            _wait_for(lambda: cri.container_status(cid).status.state == api.CONTAINER_EXITED)
            assert cri.container_status(cid).status.exit_code == 0
        finally:
            cri.stop_pod(pod_id)
            cri.remove_pod(pod_id)
