"""Start a real pycontainerd on a private socket and drive it with Debian's real ``ctr``.

Every daemon gets its own short temp directory (unix socket paths are limited to 108 bytes)
holding root, state, socket and log; :meth:`DaemonProcess.stop` always kills it and removes
the directory, so tests leave nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

CTR = shutil.which("ctr") or "/usr/bin/ctr"
START_TIMEOUT = 30.0


@dataclass
class DaemonProcess:
    """A running ``pycontainerd`` and the paths it uses."""

    base: Path
    config_path: Path
    proc: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> Path:
        """The gRPC socket."""
        return self.base / "pcd.sock"

    @property
    def root(self) -> Path:
        """The root directory."""
        return self.base / "root"

    @property
    def state(self) -> Path:
        """The state directory."""
        return self.base / "state"

    @property
    def log_path(self) -> Path:
        """Where the daemon's stderr goes."""
        return self.base / "daemon.log"

    @property
    def pid(self) -> int:
        """The daemon's process ID."""
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        """Everything the daemon logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def command(self) -> list[str]:
        """The command line that starts this daemon."""
        return [sys.executable, "-m", "pycontainerd", "--config", str(self.config_path), *self.extra_args]

    def start(self, *, wait: bool = True) -> DaemonProcess:
        """Start the daemon; with ``wait`` block until ``ctr version`` answers."""
        # This checkout's shim first: /usr/local/bin may link another checkout's install.
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", **self.env}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Poll until the socket answers; fail with the daemon's log if it exits or times out."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pycontainerd exited with {self.proc.returncode}:\n{self.log()}")
            if self.address.exists():
                result = self.ctr("version", check=False, timeout=5)
                if result.returncode == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"pycontainerd did not answer within {timeout}s:\n{self.log()}")

    def ctr(
        self,
        *args: str,
        namespace: str | None = None,
        check: bool = True,
        timeout: float = 60,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real ``ctr -a SOCK [-n NS] ARGS...``; with ``check`` fail on a non-zero exit."""
        cmd = [CTR, "-a", str(self.address)]
        if namespace is not None:
            cmd += ["-n", namespace]
        cmd += list(args)
        result = subprocess.run(
            cmd,
            capture_output=True,
            timeout=timeout,
            check=False,
            input=input.decode() if input is not None else None,
            text=True,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        """Stop the daemon with ``sig`` (then SIGKILL if it lingers); returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        code = self.proc.returncode
        return code

    def kill(self) -> None:
        """``kill -9`` the daemon."""
        self.stop(signal.SIGKILL)


# Tests name Debian's Go shim io.containerd.runc.v2 (our shim is io.containerd.pyrunc.v2), so both
# shims are exercised; out of the box io.containerd.runc.v2 is our shim.
GO_SHIM_CONFIG = """
[plugins."io.containerd.runtime.v2.task".runtimes."io.containerd.runc.v2"]
path = "/usr/bin/containerd-shim-runc-v2"
"""


def write_config(path: Path, base: Path, extra: str = "", top_level: str = "", go_shim: bool = True) -> None:
    """A version-2 config with every path under ``base``; ``top_level`` keys go before any table."""
    path.write_text(
        f"""version = 2
{top_level}
root = "{base / "root"}"
state = "{base / "state"}"

[grpc]
address = "{base / "pcd.sock"}"

[debug]
level = "debug"
{GO_SHIM_CONFIG if go_shim else ""}
{extra}
{"" if NRI_KEY in extra else private_nri_config(base)}
"""
    )


NRI_KEY = 'plugins."io.containerd.nri.v1.nri"'


def private_nri_config(base: Path) -> str:
    """NRI's socket and plugin directories under ``base``: a test daemon must neither share the host's
    socket with other daemons nor launch plugins installed on the host."""
    return f"""
[{NRI_KEY}]
  socket_path = "{base / "nri.sock"}"
  plugin_path = "{base / "nri-plugins"}"
  plugin_config_path = "{base / "nri-conf.d"}"
"""


@contextlib.contextmanager
def private_dir(prefix: str = "pcd-") -> Iterator[Path]:
    """A short-named temp directory, removed afterwards (unmounting nothing: callers own mounts)."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def running_daemon(
    extra_config: str = "",
    args: Sequence[str] = (),
    top_level: str = "",
    go_shim: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[DaemonProcess]:
    """A started daemon with private paths, always stopped and cleaned up."""
    with private_dir() as base:
        config = base / "config.toml"
        write_config(config, base, extra_config, top_level, go_shim)
        daemon = DaemonProcess(base=base, config_path=config, extra_args=list(args), env=dict(env or {}))
        try:
            daemon.start()
            yield daemon
        finally:
            daemon.stop()
            if os.environ.get("PYCONTAINERD_TEST_SHOW_LOGS"):
                print(daemon.log())


def task_status(d: DaemonProcess, cid: str, namespace: str) -> str:
    """The STATUS column of ``ctr tasks ls`` for ``cid`` ("" when there is no such task)."""
    for line in d.ctr("tasks", "ls", namespace=namespace).stdout.splitlines()[1:]:
        parts = line.split()
        if parts[0] == cid:
            return parts[2]
    return ""


def kill_shim_watching_events(d: DaemonProcess, shim_pid: int, bundle: Path, cid: str, namespace: str) -> str:
    """``kill -9`` a shim while ``ctr events`` listens; wait until the daemon dropped the task
    and its bundle; return what ``ctr events`` printed."""
    with subprocess.Popen([CTR, "-a", str(d.address), "events"], stdout=subprocess.PIPE, text=True) as events:
        try:
            time.sleep(1.0)  # let ctr events subscribe before anything is published
            subprocess.run(["kill", "-9", str(shim_pid)], check=True, timeout=10)
            deadline = time.monotonic() + 15
            while (bundle.exists() or task_status(d, cid, namespace)) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            events.terminate()
        text, _ = events.communicate(timeout=10)
    return text
