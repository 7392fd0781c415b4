"""The generated specs run under the real runc: a pause container, and containers joining it under RuntimeDefault."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri.spec import ImageConfig, SandboxFiles, container_spec, host_options, sandbox_spec
from pycontainerd.oci.spec import encode
from tests.support.rootfs import BUSYBOX, make_rootfs

pytestmark = [pytest.mark.root]

RUNC = shutil.which("runc")


class Runc:
    """runc with a private state root; deletes what it created."""

    def __init__(self, root: Path) -> None:
        assert RUNC is not None
        self.base = [RUNC, "--root", str(root)]
        self.created: list[str] = []

    def bundle(self, path: Path, spec: dict[str, Any]) -> Path:
        make_rootfs(path / "rootfs")
        (path / "rootfs" / "etc" / "group").write_text("root:x:0:\n")
        (path / "config.json").write_bytes(encode(spec))
        return path

    def run(self, bundle: Path, container_id: str) -> subprocess.CompletedProcess[str]:
        self.created.append(container_id)
        return subprocess.run(
            [*self.base, "run", "--bundle", str(bundle), container_id],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start_detached(self, bundle: Path, container_id: str) -> int:
        self.created.append(container_id)
        # The detached process keeps runc's stdio: a file, not a pipe nobody would close.
        log = bundle / "runc.log"
        with log.open("w") as err:
            started = subprocess.run(
                [*self.base, "run", "--detach", "--bundle", str(bundle), container_id],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                timeout=60,
            )
        assert started.returncode == 0, log.read_text()
        state = subprocess.run([*self.base, "state", container_id], capture_output=True, check=True, timeout=30)
        pid: int = json.loads(state.stdout)["pid"]
        return pid

    def cleanup(self) -> None:
        for container_id in reversed(self.created):
            subprocess.run([*self.base, "delete", "--force", container_id], capture_output=True, timeout=60)


@pytest.fixture
def runc(tmp_path: Path) -> Iterator[Runc]:
    if RUNC is None or not os.path.exists(BUSYBOX):
        pytest.skip("needs runc and busybox-static")
    runner = Runc(tmp_path / "runc-state")
    try:
        yield runner
    finally:
        runner.cleanup()


def _pod() -> api.PodSandboxConfig:
    pod = api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name="spec-test", uid="u1", namespace="default"), hostname="spec-test"
    )
    pod.linux.security_context.seccomp.profile_type = api.SecurityProfile.RuntimeDefault
    return pod


def _container(
    args: list[str], *, seccomp: api.SecurityProfile.ProfileType = api.SecurityProfile.RuntimeDefault
) -> api.ContainerConfig:
    config = api.ContainerConfig(metadata=api.ContainerMetadata(name="c"), command=args)
    config.linux.security_context.seccomp.profile_type = seccomp
    return config


def test_runtime_default_under_runc(runc: Runc, tmp_path: Path) -> None:
    # restrict_oom_score_adj: this host may not lower a score below the daemon's (the pause wants -998).
    options = host_options(restrict_oom_score_adj=True)
    pod = _pod()
    sandbox_id = "pycd-spec-" + secrets.token_hex(6)
    pause = sandbox_spec(
        sandbox_id=sandbox_id,
        config=pod,
        image=ImageConfig(),
        pause_args=["/bin/busybox", "sleep", "120"],
        netns_path="",  # a new network namespace from runc, standing in for CNI's
        files=SandboxFiles(),
        options=options,
    )
    pid = runc.start_detached(runc.bundle(tmp_path / "pause", pause), sandbox_id)

    def run(name: str, config: api.ContainerConfig) -> subprocess.CompletedProcess[str]:
        container_id = f"{sandbox_id}-{name}"
        spec = container_spec(
            container_id=container_id,
            sandbox_id=sandbox_id,
            config=config,
            sandbox_config=pod,
            image=ImageConfig(),
            image_ref="busybox",
            sandbox_pid=pid,
            files=SandboxFiles(),
            passwd="root:x:0:0:root:/root:/bin/sh\n",
            group="root:x:0:\n",
            options=options,
        )
        return runc.run(runc.bundle(tmp_path / name, spec), container_id)

    ok = run("true", _container(["/bin/busybox", "true"]))
    assert ok.returncode == 0, ok.stderr
    status = run("status", _container(["/bin/busybox", "cat", "/proc/self/status"]))
    assert "Seccomp:\t2" in status.stdout, status.stdout + status.stderr  # a filter is installed
    hostname = run("hostname", _container(["/bin/busybox", "hostname"]))
    assert hostname.stdout.strip() == "spec-test"  # the pod's UTS namespace, joined

    # unshare(2) and mount(2) need CAP_SYS_ADMIN, which RuntimeDefault grants them only with it.
    userns = run("unshare", _container(["/bin/busybox", "unshare", "-U", "true"]))
    assert userns.returncode != 0 and "Operation not permitted" in userns.stderr + userns.stdout
    mount = run("mount", _container(["/bin/busybox", "mount", "-t", "tmpfs", "tmpfs", "/tmp"]))
    assert mount.returncode != 0 and "permission denied" in mount.stderr.lower()  # busybox's words for EPERM
    # Without the filter, creating a user namespace needs no capability at all.
    free = run(
        "unconfined", _container(["/bin/busybox", "unshare", "-U", "true"], seccomp=api.SecurityProfile.Unconfined)
    )
    assert free.returncode == 0, free.stderr
