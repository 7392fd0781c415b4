"""CRI pod start latency: RunPodSandbox + CreateContainer + StartContainer, as kubelet calls them.

Both daemons get the CRI plugin with the same CNI network (Debian's bridge + host-local +
portmap; a bridge and subnet of their own), the busybox image imported into ``k8s.io``, and for
containerd a locally built pause image as ``sandbox_image`` (no registry is reachable here).
Each run starts one pod with one container, then stops and removes it (not timed).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import secrets
import subprocess
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2_grpc as api_grpc
from pycontainerd.sandbox.pause import pause_binary

if TYPE_CHECKING:
    from collections.abc import Callable

PAUSE_REF = "docker.io/library/pause:bench"
BUSYBOX_REF = "docker.io/library/busybox:bench"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pause_image(dest: Path, work: Path) -> Path:
    """An OCI archive whose only file is the static pause binary (entrypoint ``/pause``)."""
    if dest.exists():
        return dest
    binary = pause_binary(work).read_bytes()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        info = tarfile.TarInfo("pause")
        info.size, info.mode = len(binary), 0o755
        tf.addfile(info, io.BytesIO(binary))
    layer = raw.getvalue()
    gz = gzip.compress(layer, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64"
            if subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip() == "x86_64"
            else "arm64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause"]},
            "rootfs": {"type": "layers", "diff_ids": [_sha(layer)]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _sha(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _sha(gz), "size": len(gz)}
            ],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": _sha(manifest),
                    "size": len(manifest),
                    "annotations": {
                        "io.containerd.image.name": PAUSE_REF,
                        "org.opencontainers.image.ref.name": "bench",
                    },
                }
            ],
        }
    ).encode()
    with tarfile.open(dest, "w") as tf:
        for name, data in [
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", index),
            *((f"blobs/sha256/{_sha(b)[7:]}", b) for b in (config, manifest, gz)),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return dest


def cri_config(name: str, base: Path) -> str:
    """The CRI part of config.toml for daemon ``name`` (its own bridge, subnet and CNI dirs)."""
    index = 0 if name == "pycontainerd" else 1
    conf_dir = base / "net.d"
    conf_dir.mkdir(parents=True, exist_ok=True)
    conflist = {
        "cniVersion": "1.0.0",
        "name": f"bench{index}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": f"pycbench{index}",
                "isGateway": True,
                "ipMasq": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": f"10.{230 + index}.0.0/16"}]],
                    "dataDir": str(base / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    (conf_dir / "10-bench.conflist").write_text(json.dumps(conflist))
    bins = 'bin_dirs = ["/usr/lib/cni"]' if name == "pycontainerd" else 'bin_dir = "/usr/lib/cni"'
    return (
        '[plugins."io.containerd.grpc.v1.cri"]\n'
        f'  sandbox_image = "{PAUSE_REF}"\n'
        "  restrict_oom_score_adj = true\n"  # CAP_SYS_RESOURCE is not ours here: -998 cannot be set
        '  [plugins."io.containerd.grpc.v1.cri".cni]\n'
        f'    conf_dir = "{conf_dir}"\n    {bins}\n'
    )


def pod_start(sock: Path, image: str, attempt: int) -> float:
    """Seconds for RunPodSandbox + CreateContainer + StartContainer; the pod is removed after."""
    channel = grpc.insecure_channel(f"unix://{sock}")
    runtime = api_grpc.RuntimeServiceStub(channel)
    pod = api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name=f"bench-{attempt}", namespace="default", uid=secrets.token_hex(8)),
        hostname=f"bench-{attempt}",
    )
    ctr = api.ContainerConfig(
        metadata=api.ContainerMetadata(name="app"), image=api.ImageSpec(image=image), command=["sleep", "3600"]
    )
    t0 = time.perf_counter()
    pod_id = runtime.RunPodSandbox(api.RunPodSandboxRequest(config=pod), timeout=120).pod_sandbox_id
    cid = runtime.CreateContainer(
        api.CreateContainerRequest(pod_sandbox_id=pod_id, config=ctr, sandbox_config=pod), timeout=120
    ).container_id
    runtime.StartContainer(api.StartContainerRequest(container_id=cid), timeout=120)
    elapsed = time.perf_counter() - t0
    runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=120)
    runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=120)
    channel.close()
    return elapsed


def cleanup_network() -> None:
    """Remove the bench bridges (the CNI plugins leave them behind)."""
    for index in (0, 1):
        subprocess.run(["ip", "link", "del", f"pycbench{index}"], capture_output=True, check=False, timeout=30)


def measure(
    daemons: list[object], runs: int, image_path: Path, start: Callable[[object, str], None]
) -> dict[str, list[float]]:
    """Interleaved pod starts on every daemon (``start`` boots a daemon with the given CRI config)."""
    out: dict[str, list[float]] = {d.name: [] for d in daemons}  # type: ignore[attr-defined]
    pause = pause_image(Path("/tmp/bench-pause.tar"), Path("/tmp/bench-pause-build"))
    for d in daemons:
        start(d, cri_config(d.name, d.base))  # type: ignore[attr-defined]
        for archive in (image_path, pause):
            res = d.ctr("images", "import", str(archive), ns="k8s.io")  # type: ignore[attr-defined]
            assert res.returncode == 0, res.stderr
        pod_start(d.sock, BUSYBOX_REF, -1)  # warm-up: first use builds caches on both sides  # type: ignore[attr-defined]
    try:
        for i in range(runs * 2):
            for d in daemons:
                out[d.name].append(pod_start(d.sock, BUSYBOX_REF, i))  # type: ignore[attr-defined]
    finally:
        cleanup_network()
    return out
