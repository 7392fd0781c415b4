"""``pyctr`` end to end: every command group against our daemon, a few against containerd 1.6.

Tables are checked by their columns, ``--format json`` by parsing; ``pyctr run`` must stream the
container's output and exit with its status; errors must say what is wrong and exit non-zero.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pycontainerd.tools.busybox import build_image
from tests.support.daemon import DaemonProcess, private_dir, running_daemon
from tests.support.real_containerd import CONTAINERD, real_containerd

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

pytestmark = [pytest.mark.root, pytest.mark.integration]

NS = "pyctr"
REF = "docker.io/library/busybox:latest"


def pyctr_cmd(address: Path | str, *args: str, namespace: str = NS) -> list[str]:
    return [sys.executable, "-m", "pycontainerd.cli.main", "-a", str(address), "-n", namespace, *args]


def pyctr(
    address: Path | str, *args: str, ok: bool = True, input: str | None = None, namespace: str = NS
) -> subprocess.CompletedProcess[str]:
    """Run pyctr; with ``ok`` fail unless it exits 0."""
    result = subprocess.run(
        pyctr_cmd(address, *args, namespace=namespace),
        capture_output=True,
        text=True,
        timeout=60,
        input=input if input is not None else "",
        check=False,
    )
    if ok and result.returncode != 0:
        raise AssertionError(f"pyctr {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def rows(output: str) -> list[list[str]]:
    """A table's rows split on runs of 2+ spaces (cells themselves have single spaces at most)."""
    import re

    return [re.split(r"\s{2,}", line.strip()) for line in output.strip().splitlines()]


def column(output: str, name: str) -> list[str]:
    """The values of column ``name`` of a table."""
    table = rows(output)
    index = table[0].index(name)
    return [r[index] for r in table[1:]]


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with running_daemon() as d, private_dir("img-") as base:
        image = build_image(base / "busybox.tar")
        pyctr(d.address, "images", "import", str(image.path))
        yield d


def test_help_completion_and_usage_errors() -> None:
    top = subprocess.run([sys.executable, "-m", "pycontainerd.cli.main", "--help"], capture_output=True, text=True)
    for group in ("images", "containers", "tasks", "run", "snapshots", "content", "leases", "namespaces", "events"):
        assert group in top.stdout
    for group in ("images pull", "containers create", "tasks exec", "run", "snapshots prepare", "leases create"):
        helped = subprocess.run(
            [sys.executable, "-m", "pycontainerd.cli.main", *group.split(), "--help"], capture_output=True, text=True
        )
        assert helped.returncode == 0
        assert "examples:\n  pyctr" in helped.stdout, group

    script = subprocess.run(
        [sys.executable, "-m", "pycontainerd.cli.main", "completion", "bash"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    checked = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    # The script completes subcommands and options at each level of the tree.
    probe = (
        script
        + "\nCOMP_WORDS=(pyctr tasks ''); COMP_CWORD=2; _pyctr_complete; echo \"${COMPREPLY[*]}\""
        + '\nCOMP_WORDS=(pyctr run --r); COMP_CWORD=2; _pyctr_complete; echo "${COMPREPLY[*]}"'
    )
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True).stdout.splitlines()
    assert {"attach", "exec", "kill", "ls", "metrics", "start"} <= set(out[0].split())
    assert {"--rm", "--runtime", "--read-only"} <= set(out[1].split())
    zsh = subprocess.run(
        [sys.executable, "-m", "pycontainerd.cli.main", "completion", "zsh"], capture_output=True, text=True, check=True
    ).stdout
    assert zsh.startswith("#compdef pyctr") and "bashcompinit" in zsh

    # A daemon that is not there: a clear message and exit 1.
    down = pyctr("/tmp/no-such-pycontainerd.sock", "containers", "ls", ok=False)
    assert down.returncode == 1 and "pyctr: cannot connect to the daemon" in down.stderr
    # A bad flag value: exit 2.
    bad = pyctr("/tmp/no-such-pycontainerd.sock", "leases", "create", "--expires", "soon", ok=False)
    assert bad.returncode == 2 and "invalid duration" in bad.stderr


def test_images(daemon: DaemonProcess) -> None:
    table = pyctr(daemon.address, "images", "ls").stdout
    assert rows(table)[0] == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    assert column(table, "REF") == [REF]
    listed = json.loads(pyctr(daemon.address, "--format", "json", "images", "ls").stdout)
    assert listed[0]["name"] == REF and listed[0]["size"] > 500_000 and listed[0]["platforms"]
    assert pyctr(daemon.address, "images", "ls", "-q").stdout.split() == [REF]

    check = json.loads(pyctr(daemon.address, "images", "check", "--format", "json").stdout)
    assert check[0]["status"] == "complete (3/3)" and check[0]["unpacked"] is True
    assert pyctr(daemon.address, "images", "check", "-q").stdout.split() == [REF]

    assert pyctr(daemon.address, "images", "label", REF, "team=infra").stdout.strip() == "team=infra"
    assert "team=infra" in column(pyctr(daemon.address, "images", "ls").stdout, "LABELS")[0]
    assert pyctr(daemon.address, "images", "label", REF, "team=").stdout.strip() == "-"

    pyctr(daemon.address, "images", "tag", REF, "example.com/copy:1")
    assert pyctr(daemon.address, "images", "rm", "example.com/copy:1").stdout.strip() == "example.com/copy:1"
    missing = pyctr(daemon.address, "images", "rm", "example.com/nope:1", ok=False)
    assert missing.returncode == 1 and "example.com/nope:1 not found" in missing.stderr

    target = Path(f"/tmp/pyctr-mnt-{os.getpid()}")
    target.mkdir()
    try:
        pyctr(daemon.address, "images", "mount", REF, str(target))
        assert (target / "bin" / "busybox").exists()
        pyctr(daemon.address, "images", "unmount", str(target))
        assert not (target / "bin").exists()
    finally:
        subprocess.run(["umount", str(target)], capture_output=True, check=False)
        target.rmdir()


def test_run_streams_output_and_exit_status(daemon: DaemonProcess) -> None:
    ran = pyctr(daemon.address, "run", "--rm", REF, "r1", "sh", "-c", "echo out; echo err >&2; exit 3", ok=False)
    assert (ran.returncode, ran.stdout, ran.stderr) == (3, "out\n", "err\n")
    fed = pyctr(daemon.address, "run", "--rm", REF, "r2", "sh", "-c", "tr a-z A-Z", input="hello\n")
    assert fed.stdout == "HELLO\n"
    flagged = pyctr(
        daemon.address,
        "run",
        "--rm",
        "--env",
        "GREETING=hi",
        "--cwd",
        "/tmp",
        "--mount",
        f"type=bind,src={daemon.base},dst=/host,options=rbind:ro",
        "--net-host",
        REF,
        "r3",
        "sh",
        "-c",
        "echo $GREETING; pwd; test -e /host/config.toml && echo mounted; hostname",
    )
    assert flagged.stdout.splitlines() == ["hi", "/tmp", "mounted", os.uname().nodename]
    # Our Python shim too, and no output lost at the end (the shim flushes before it closes).
    for shim in ("io.containerd.pyrunc.v2", "io.containerd.runc.v2"):
        big = pyctr(
            daemon.address, "run", "--rm", "--runtime", shim, REF, "r5", "sh", "-c", "seq 1 30000; exit 6", ok=False
        )
        assert big.returncode == 6, big.stderr
        assert big.stdout.splitlines() == [str(n) for n in range(1, 30001)], shim
    # --rm left nothing behind.
    assert pyctr(daemon.address, "containers", "ls", "-q").stdout.strip() == ""
    unknown = pyctr(daemon.address, "run", "--rm", "example.com/none:1", "r4", "true", ok=False)
    assert unknown.returncode == 1 and "not found" in unknown.stderr


def test_run_with_terminal(daemon: DaemonProcess) -> None:
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        pyctr_cmd(daemon.address, "run", "--rm", "-t", REF, "tty1", "sh", "-c", "test -t 0 && echo is-a-tty; exit 4"),
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        if select.select([primary], [], [], 0.1)[0]:
            try:
                output += os.read(primary, 4096)
            except OSError:
                break
    assert proc.wait(10) == 4
    while select.select([primary], [], [], 0.2)[0]:  # what was written after the last look
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: every writer is gone
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)
    assert b"is-a-tty" in output


def test_containers_and_tasks(daemon: DaemonProcess) -> None:
    a = daemon.address
    limits = ("--memory-limit", str(64 << 20), "--cpus", "0.5")
    pyctr(a, "containers", "create", "--label", "app=web", "--env", "A=1", *limits, REF, "c1", "sleep", "300")
    table = pyctr(a, "containers", "ls").stdout
    assert rows(table)[0] == ["CONTAINER", "IMAGE", "RUNTIME"] and column(table, "CONTAINER") == ["c1"]
    assert pyctr(a, "c", "ls", "-q", "labels.app==db").stdout.strip() == ""
    info = json.loads(pyctr(a, "containers", "info", "c1").stdout)
    assert info["labels"]["app"] == "web" and info["snapshot_key"] == "c1"
    assert info["spec"]["value"]["process"]["args"] == ["sleep", "300"]
    assert "A=1" in json.loads(pyctr(a, "containers", "info", "--spec", "c1").stdout)["process"]["env"]
    assert "tier=front" in pyctr(a, "containers", "label", "c1", "tier=front").stdout

    pyctr(a, "tasks", "start", "-d", "c1")
    cgroups = Path("/sys/fs/cgroup")
    assert (cgroups / f"memory/{NS}/c1/memory.limit_in_bytes").read_text().strip() == str(64 << 20)
    assert (cgroups / f"cpu/{NS}/c1/cpu.cfs_quota_us").read_text().strip() == "50000"
    tasks = json.loads(pyctr(a, "tasks", "ls", "--format", "json").stdout)
    assert [(t["container_id"], t["status"]) for t in tasks] == [("c1", "running")]
    assert rows(pyctr(a, "tasks", "ls").stdout)[1][2] == "RUNNING"
    pids = json.loads(pyctr(a, "--format", "json", "tasks", "ps", "c1").stdout)
    assert pids[0]["pid"] == tasks[0]["pid"]

    execd = pyctr(a, "tasks", "exec", "c1", "sh", "-c", "echo in-exec; exit 5", ok=False)
    assert (execd.returncode, execd.stdout) == (5, "in-exec\n")
    pyctr(a, "tasks", "pause", "c1")
    assert column(pyctr(a, "tasks", "ls").stdout, "STATUS") == ["PAUSED"]
    pyctr(a, "tasks", "resume", "c1")
    metrics = json.loads(pyctr(a, "tasks", "metrics", "--format", "json", "c1").stdout)
    assert metrics["id"] == "c1" and metrics["metrics"]
    assert "METRIC" in pyctr(a, "tasks", "metrics", "c1").stdout

    busy = pyctr(a, "containers", "rm", "c1", ok=False)
    assert busy.returncode == 1 and "has a task" in busy.stderr
    pyctr(a, "tasks", "kill", "-s", "SIGKILL", "c1")
    pyctr(a, "tasks", "rm", "-f", "c1")
    pyctr(a, "containers", "rm", "c1")
    assert pyctr(a, "containers", "ls", "-q").stdout.strip() == ""

    for args in (("containers", "info", "nope"), ("tasks", "kill", "nope"), ("tasks", "exec", "nope", "true")):
        failed = pyctr(a, *args, ok=False)
        assert failed.returncode == 1, args
        assert failed.stderr.startswith("pyctr: ") and "not found" in failed.stderr, failed.stderr


def test_detached_run_and_attach(daemon: DaemonProcess) -> None:
    a = daemon.address
    pyctr(a, "run", "-d", REF, "d1", "sh", "-c", "read line; echo got:$line; exit 7")
    attached = pyctr(a, "tasks", "attach", "d1", input="ping\n", ok=False)
    assert (attached.returncode, attached.stdout) == (7, "got:ping\n")
    pyctr(a, "tasks", "rm", "d1")
    pyctr(a, "containers", "rm", "d1")


def test_snapshots_and_content(daemon: DaemonProcess) -> None:
    a = daemon.address
    layers = json.loads(pyctr(a, "snapshots", "ls", "--format", "json").stdout)
    parent = next(s["name"] for s in layers if s["kind"] == "committed")
    mounts = json.loads(pyctr(a, "snapshots", "prepare", "--mounts", "work", parent).stdout)
    assert mounts[0]["type"] in ("overlay", "bind")
    assert pyctr(a, "snapshots", "mounts", "/mnt", "work").stdout.startswith("mount -t ")
    assert json.loads(pyctr(a, "snapshots", "info", "work").stdout)["kind"] == "active"
    assert "owner=me" in pyctr(a, "snapshots", "label", "work", "owner=me").stdout
    pyctr(a, "snapshots", "commit", "layer-x", "work")
    pyctr(a, "snapshots", "view", "look", "layer-x")
    assert rows(pyctr(a, "snapshots", "ls").stdout)[0] == ["KEY", "PARENT", "KIND"]
    kinds = {
        s["name"]: (s["kind"], s["parent"]) for s in json.loads(pyctr(a, "--format", "json", "snapshots", "ls").stdout)
    }
    assert kinds["layer-x"] == ("committed", parent) and kinds["look"] == ("view", "layer-x")
    tree = pyctr(a, "snapshots", "tree").stdout
    assert "\\_ layer-x" in tree and "\\_ look" in tree
    usage = json.loads(pyctr(a, "snapshots", "usage", "--format", "json", "layer-x").stdout)
    assert usage[0]["key"] == "layer-x"
    assert pyctr(a, "snapshots", "rm", "layer-x", ok=False).returncode == 1  # it has a child
    pyctr(a, "snapshots", "rm", "look", "layer-x")
    missing = pyctr(a, "snapshots", "info", "layer-x", ok=False)
    assert missing.returncode == 1 and "not found" in missing.stderr

    lease = pyctr(a, "leases", "create", "--id", "hold", "--expires", "1h", "purpose=test").stdout.strip()
    assert lease == "hold"
    leases = json.loads(pyctr(a, "leases", "ls", "--format", "json").stdout)
    held = next(entry for entry in leases if entry["id"] == "hold")
    assert held["labels"]["purpose"] == "test" and "containerd.io/gc.expire" in held["labels"]
    # A GC root from the commit on: the snapshot removals above may have scheduled a collection.
    ingest = ("content", "ingest", "--label", "containerd.io/gc.root=pyctr-test", "note")
    digest = pyctr(a, *ingest, input="hello content\n").stdout.strip()
    assert digest.startswith("sha256:")
    assert digest in pyctr(a, "content", "ls", "-q").stdout.split()
    assert pyctr(a, "content", "get", digest).stdout == "hello content\n"
    listed = {c["digest"]: c for c in json.loads(pyctr(a, "content", "ls", "--format", "json").stdout)}
    assert listed[digest]["size"] == len("hello content\n")
    assert "keep=yes" in pyctr(a, "content", "label", digest, "keep=yes").stdout
    assert pyctr(a, "content", "rm", digest).stdout.strip() == digest
    assert pyctr(a, "content", "get", digest, ok=False).returncode == 1
    assert pyctr(a, "leases", "rm", "hold").stdout.strip() == "hold"
    assert "hold" not in pyctr(a, "leases", "ls", "-q").stdout.split()


def test_namespaces_plugins_version_events(daemon: DaemonProcess) -> None:
    a = daemon.address
    events = subprocess.Popen(
        pyctr_cmd(a, "events", "--format", "json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(1.0)  # subscribed before anything is published
        pyctr(a, "ns", "create", "team-a", "owner=me")
        assert "owner=you" in pyctr(a, "ns", "label", "team-a", "owner=you").stdout
        spaces = {n["name"]: n["labels"] for n in json.loads(pyctr(a, "ns", "ls", "--format", "json").stdout)}
        assert spaces["team-a"] == {"owner": "you"}
        assert "team-a" in column(pyctr(a, "namespaces", "ls").stdout, "NAME")
        assert pyctr(a, "ns", "rm", "team-a").stdout.strip() == "team-a"
        busy = pyctr(a, "ns", "rm", NS, ok=False)  # holds the image
        assert busy.returncode == 1 and NS in busy.stderr
        time.sleep(0.5)
    finally:
        events.terminate()
    out, _ = events.communicate(timeout=10)
    published = [json.loads(line) for line in out.splitlines()]
    published = [e for e in published if e["topic"].startswith("/namespaces/")]
    assert [e["topic"] for e in published] == ["/namespaces/create", "/namespaces/update", "/namespaces/delete"]
    assert published[0]["event"] == {"name": "team-a", "labels": {"owner": "me"}}

    plugins = json.loads(pyctr(a, "plugins", "ls", "--format", "json").stdout)
    assert any(p["type"] == "io.containerd.snapshotter.v1" and p["id"] == "overlayfs" for p in plugins)
    detailed = pyctr(a, "plugins", "ls", "-d", "type==io.containerd.snapshotter.v1").stdout
    assert "Type:          io.containerd.snapshotter.v1" in detailed and "ID:            overlayfs" in detailed
    assert rows(pyctr(a, "plugins", "ls").stdout)[0] == ["TYPE", "ID", "PLATFORMS", "STATUS"]
    version = json.loads(pyctr(a, "version", "--format", "json").stdout)
    assert "pycontainerd" in version["server"]["version"] and version["server"]["uuid"]


@pytest.mark.skipif(CONTAINERD is None, reason="Debian's containerd is not installed")
def test_against_real_containerd() -> None:
    with real_containerd() as sock, private_dir("img-") as base:
        image = build_image(base / "busybox.tar")
        imported = subprocess.run(
            ["ctr", "-a", str(sock), "-n", NS, "images", "import", str(image.path)], capture_output=True, check=False
        )
        assert imported.returncode == 0, imported.stderr
        assert column(pyctr(sock, "images", "ls").stdout, "REF") == [REF]
        version = json.loads(pyctr(sock, "--format", "json", "version").stdout)
        assert version["server"]["version"].startswith("1.6")
        pyctr(sock, "containers", "create", REF, "real1", "true")
        assert json.loads(pyctr(sock, "containers", "ls", "--format", "json").stdout)[0]["id"] == "real1"
        assert NS in column(pyctr(sock, "ns", "ls").stdout, "NAME")
        assert any(p["id"] == "overlayfs" for p in json.loads(pyctr(sock, "plugins", "ls", "--format", "json").stdout))
        ran = pyctr(sock, "run", "--rm", REF, "real2", "sh", "-c", "echo from-1.6; exit 2", ok=False)
        assert (ran.returncode, ran.stdout) == (2, "from-1.6\n")
        pyctr(sock, "containers", "rm", "real1")


def test_client_library_sync_flavour(daemon: DaemonProcess) -> None:
    """The calls pyctr is built on, from blocking code: values typed, errors as errdefs kinds."""
    from pycontainerd.client import SyncClient
    from pycontainerd.errdefs import AlreadyExists, NotFound

    async def chunks() -> AsyncIterator[bytes]:
        yield b"sync "
        yield b"client"

    with SyncClient(str(daemon.address), NS) as client:
        assert [i.name for i in client.call(client.aio.images.list())] == [REF]
        config = client.call(client.aio.images.config(REF))
        assert config.chain_id.startswith("sha256:") and config.config["Cmd"] == ["sh"]
        with pytest.raises(NotFound):
            client.call(client.aio.containers.get("nope"))
        digest = client.call(client.aio.content.write("lib-ref", chunks(), labels={"k": "v"}))
        assert client.call(client.aio.content.read(digest)) == b"sync client"
        assert client.call(client.aio.content.info(digest)).labels == {"k": "v"}
        client.call(client.aio.namespaces.create("lib-ns"))
        with pytest.raises(AlreadyExists):
            client.call(client.aio.namespaces.create("lib-ns"))
        client.call(client.aio.namespaces.delete("lib-ns"))
        client.call(client.aio.content.delete(digest))
