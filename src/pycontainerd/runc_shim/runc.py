"""The runc command line, driven through the reaper."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pycontainerd.errdefs import FailedPrecondition, NotFound

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pycontainerd.runc_shim.reaper import Reaper

COMMAND_TIMEOUT = 60.0
# Dumping or restoring a large memory image takes as long as writing or reading it.
CRIU_TIMEOUT = 600.0


class RuncError(FailedPrecondition):
    """runc exited non-zero; the message carries what it said."""


@dataclass(frozen=True, slots=True)
class CriuOptions:
    """What ``runc checkpoint`` / ``runc restore`` pass on to CRIU (containerd's CheckpointOptions)."""

    image_path: str
    work_path: str = ""
    parent_path: str = ""
    tcp_established: bool = False
    ext_unix_sk: bool = False
    shell_job: bool = False
    file_locks: bool = False
    empty_namespaces: tuple[str, ...] = ()
    cgroups_mode: str = ""

    def args(self, *, restore: bool = False) -> list[str]:
        """The runc flags of checkpoint (or restore, which has no ``--parent-path``)."""
        out = ["--image-path", self.image_path]
        if self.work_path:
            out += ["--work-path", self.work_path]
        if self.parent_path and not restore:
            out += ["--parent-path", self.parent_path]
        if self.tcp_established:
            out.append("--tcp-established")
        if self.ext_unix_sk:
            out.append("--ext-unix-sk")
        if self.shell_job:
            out.append("--shell-job")
        if self.cgroups_mode:
            out += ["--manage-cgroups-mode", self.cgroups_mode]
        if self.file_locks:
            out.append("--file-locks")
        for ns in self.empty_namespaces:
            out += ["--empty-ns", ns]
        return out


@dataclass(frozen=True, slots=True)
class Stdio:
    """File descriptors the container process gets as stdin/stdout/stderr (None: /dev/null)."""

    stdin: int | None = None
    stdout: int | None = None
    stderr: int | None = None


async def _read_all(fd: int) -> bytes:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
    try:
        return await reader.read()
    finally:
        transport.close()


class Runc:
    """One runc state root (``--root``), e.g. ``/run/pycontainerd/runc/<namespace>``."""

    def __init__(self, reaper: Reaper, root: str, *, binary: str = "runc", log_path: str = "") -> None:
        self._reaper = reaper
        self.root = root
        self.binary = binary
        self.log_path = log_path

    def _argv(self, *args: str) -> list[str]:
        argv = [self.binary, "--root", self.root]
        if self.log_path:
            argv += ["--log", self.log_path, "--log-format", "json"]
        return [*argv, *args]

    def _last_log_error(self) -> str:
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, "rb") as fh:
                lines = fh.read().splitlines()
        except OSError:
            return ""
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("level") in ("error", "fatal"):
                return str(entry.get("msg", ""))
        return ""

    async def run(
        self,
        *args: str,
        stdio: Stdio | None = None,
        input_data: bytes | None = None,
        timeout: float = COMMAND_TIMEOUT,  # noqa: ASYNC109 - bounds the runc child, not this call
    ) -> bytes:
        """Run one runc command and return its stdout; RuncError on failure."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        in_r = in_w = None
        if input_data is not None:
            in_r, in_w = os.pipe()
        devnull = None
        if stdio is not None:
            # The container inherits these: never hand it our capture pipes.
            devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            stdio = Stdio(
                stdio.stdin if stdio.stdin is not None else devnull,
                stdio.stdout if stdio.stdout is not None else devnull,
                stdio.stderr if stdio.stderr is not None else devnull,
            )
        else:
            stdio = Stdio()
        try:
            pid = _spawn(
                self._argv(*args),
                stdin=in_r if in_r is not None else stdio.stdin,
                stdout=stdio.stdout if stdio.stdout is not None else out_w,
                stderr=stdio.stderr if stdio.stderr is not None else err_w,
            )
        finally:
            for fd in (out_w, err_w, in_r, devnull):
                if fd is not None:
                    os.close(fd)
        if in_w is not None:
            with os.fdopen(in_w, "wb") as fh:
                fh.write(input_data or b"")
        stdout_task = asyncio.ensure_future(_read_all(out_r))
        stderr_task = asyncio.ensure_future(_read_all(err_r))
        try:
            status = await asyncio.wait_for(self._reaper.wait(pid), timeout)
        except TimeoutError:
            os.kill(pid, 9)
            await self._reaper.wait(pid)
            raise RuncError(f"runc {args[0]} timed out after {timeout}s") from None
        out, err = await asyncio.gather(stdout_task, stderr_task)
        if status != 0:
            detail = self._last_log_error() or err.decode(errors="replace").strip() or f"exit status {status}"
            if "does not exist" in detail or "not found" in detail:
                raise NotFound(f"runc {args[0]}: {detail}")
            raise RuncError(f"runc {args[0]} failed: {detail}")
        return out

    async def create(
        self, container_id: str, bundle: str, *, pid_file: str, stdio: Stdio, console_socket: str = ""
    ) -> None:
        """``runc create``: the init process waits, stopped at the exec, for :meth:`start`."""
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        await self.run(*args, container_id, stdio=stdio)

    async def checkpoint(self, container_id: str, opts: CriuOptions, *, leave_running: bool) -> None:
        """``runc checkpoint``: dump the container with CRIU; without ``leave_running`` it is killed."""
        args = ["checkpoint", *opts.args(), *(["--leave-running"] if leave_running else [])]
        await self.run(*args, container_id, timeout=CRIU_TIMEOUT)

    async def restore(
        self,
        container_id: str,
        bundle: str,
        opts: CriuOptions,
        *,
        pid_file: str,
        stdio: Stdio,
        console_socket: str = "",
    ) -> None:
        """``runc restore --detach``: the restored init is re-parented to us (we are a subreaper)."""
        args = ["restore", "--detach", "--no-subreaper", "--bundle", bundle, "--pid-file", pid_file]
        args += opts.args(restore=True)
        if console_socket:
            args += ["--console-socket", console_socket]
        await self.run(*args, container_id, stdio=stdio, timeout=CRIU_TIMEOUT)

    async def start(self, container_id: str) -> None:
        """``runc start``."""
        await self.run("start", container_id)

    async def exec(
        self, container_id: str, process_spec: bytes, *, pid_file: str, stdio: Stdio, console_socket: str = ""
    ) -> None:
        """``runc exec --detach`` of a process spec (JSON)."""
        with tempfile.NamedTemporaryFile("wb", prefix="process-", suffix=".json", delete=False) as fh:
            fh.write(process_spec)
            spec_path = fh.name
        try:
            args = ["exec", "--detach", "--process", spec_path, "--pid-file", pid_file]
            if console_socket:
                args += ["--console-socket", console_socket]
            await self.run(*args, container_id, stdio=stdio)
        finally:
            os.unlink(spec_path)

    async def kill(self, container_id: str, signal: int, *, all_processes: bool = False) -> None:
        """``runc kill``."""
        args = ["kill", *(["--all"] if all_processes else []), container_id, str(signal)]
        await self.run(*args)

    async def delete(self, container_id: str, *, force: bool = False) -> None:
        """``runc delete``."""
        await self.run("delete", *(["--force"] if force else []), container_id)

    async def state(self, container_id: str) -> dict[str, Any]:
        """``runc state`` as a dict (status, pid, bundle...)."""
        out = await self.run("state", container_id)
        data: dict[str, Any] = json.loads(out)
        return data

    async def ps(self, container_id: str) -> list[int]:
        """PIDs of every process in the container."""
        out = await self.run("ps", "--format", "json", container_id)
        pids: Sequence[int] = json.loads(out) or []
        return list(pids)

    async def pause(self, container_id: str) -> None:
        """``runc pause``."""
        await self.run("pause", container_id)

    async def resume(self, container_id: str) -> None:
        """``runc resume``."""
        await self.run("resume", container_id)

    async def update(self, container_id: str, resources: bytes) -> None:
        """``runc update --resources -`` with LinuxResources JSON."""
        await self.run("update", "--resources", "-", container_id, input_data=resources)

    async def stats(self, container_id: str) -> dict[str, Any]:
        """``runc events --stats`` as a dict."""
        out = await self.run("events", "--stats", container_id)
        data: dict[str, Any] = json.loads(out)
        return data


def _spawn(argv: list[str], *, stdin: int | None, stdout: int | None, stderr: int | None) -> int:
    from pycontainerd.runc_shim.reaper import spawn

    return spawn(argv, stdin=stdin, stdout=stdout, stderr=stderr)
