"""The runner: one forked process per wasm container, running its module with wasmtime.

Why a process per container: a module that loops never returns to Python, and wasmtime has no
way to stop it from outside but epoch interruption, which a container's Kill would then have
to emulate for every signal. A process makes every signal real (SIGKILL kills, SIGSTOP
pauses), gives the container a PID of its own for ``ctr tasks ls``, ``Pids`` and the CRI, and
keeps one module's crash away from the others of a shared shim.

Life of a runner (:func:`run`, in the child right after :func:`os.fork`):

1. Become an ordinary process: default signal dispositions, no wakeup fd, die with the shim
   (``PR_SET_PDEATHSIG``), the container's stdio on 0/1/2, the control socket on 3, every
   other inherited descriptor closed (another container's pipe held open here would never
   reach EOF). The cyclic GC is off: it could finalize a socket object inherited from the
   shim and close a descriptor number wasmtime has reused since.
2. Load the module (from the rootfs, or from the image's wasm layers through the daemon's
   API: :mod:`~pycontainerd.wasm_shim.layers`), compile it (or load the compiled copy from the
   cache), build the WASI context.
3. Report ``ok`` (or ``error <message>``) on the control socket: that ends the task's Create.
4. Wait for ``g`` (Start), then instantiate and call the entry function. ``proc_exit(n)``
   exits with ``n``, a return with 0, a trap with 137 (as runwasi reports one), after
   printing the trap on stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import os
import platform
import signal
from importlib import metadata
from typing import TYPE_CHECKING, NoReturn

import wasmtime

from pycontainerd.wasm_shim import layers

if TYPE_CHECKING:
    from pycontainerd.wasm_shim.spec import RunPlan

CTL_FD = 3
TRAP_EXIT = 137
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
WASM_MAGIC = b"\0asm"
# Signals whose disposition Python or the shim's event loop changed; a runner needs the defaults.
RESET_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGHUP)

WASMTIME_VERSION = metadata.version("wasmtime")
ENGINE_KEY = f"wasmtime-{WASMTIME_VERSION}-{platform.machine()}"
"""Compiled modules are only valid for the engine (version, machine) that compiled them."""


class RunnerError(Exception):
    """The module cannot be prepared; the message goes back to the task's Create."""


def _prctl(option: int, value: int | bytes) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(option, value, 0, 0, 0)


def _become_process(stdio: tuple[int | None, int | None, int | None], ctl: int, name: str) -> None:
    """Step 1: defaults, stdio on 0/1/2, control socket on 3, nothing else open."""
    gc.disable()
    signal.set_wakeup_fd(-1)
    for sig in RESET_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _prctl(PR_SET_NAME, f"wasm:{name}"[:15].encode())
    null = os.open(os.devnull, os.O_RDWR)
    # Move the control socket out of the way first: 0-3 are about to be overwritten.
    ctl = os.dup(ctl) if ctl <= CTL_FD else ctl
    sources = [fd if fd is not None else null for fd in stdio]
    sources = [os.dup(fd) if fd <= CTL_FD else fd for fd in sources]
    for target, fd in enumerate(sources):
        os.dup2(fd, target)
    os.dup2(ctl, CTL_FD)
    os.closerange(CTL_FD + 1, os.sysconf("SC_OPEN_MAX"))


def _module_bytes(plan: RunPlan, address: str, namespace: str) -> tuple[bytes, str]:
    """The module's bytes and sha256 digest: from the rootfs, else from the image's layers."""
    if plan.module_path:
        try:
            with open(plan.module_path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise RunnerError(f"reading wasm module {plan.args[0]}: {exc.strerror}") from exc
        return data, "sha256:" + hashlib.sha256(data).hexdigest()
    if not address:
        raise RunnerError(f"{plan.args[0]}: no such file in the rootfs (and no daemon address to look for wasm layers)")
    try:
        return layers.module_from_image(address, namespace, plan.container_id, plan.args[0])
    except Exception as exc:
        raise RunnerError(f"{plan.args[0]}: no such file in the rootfs, and no wasm layer: {exc}") from exc


def compile_module(engine: wasmtime.Engine, data: bytes, digest: str, name: str) -> wasmtime.Module:
    """The compiled module, from the cache when an earlier runner compiled the same bytes."""
    if not data.startswith(WASM_MAGIC):
        raise RunnerError(f"{name}: not a WebAssembly module")
    cached = layers.compiled_path(digest, ENGINE_KEY)
    if os.path.exists(cached):
        with contextlib.suppress(wasmtime.WasmtimeError):
            return wasmtime.Module.deserialize_file(engine, cached)
    try:
        module = wasmtime.Module(engine, data)
    except wasmtime.WasmtimeError as exc:
        if data[4:8] != b"\x01\0\0\0":
            raise RunnerError(f"{name}: a wasm component, not a core module (components are not supported)") from exc
        raise RunnerError(f"{name}: invalid WebAssembly module: {exc}") from exc
    with contextlib.suppress(OSError, wasmtime.WasmtimeError):
        layers.write_atomically(cached, module.serialize())
    return module


def wasi_config(plan: RunPlan) -> wasmtime.WasiConfig:
    """argv, environment, stdio (the process's own 0/1/2) and preopened directories."""
    config = wasmtime.WasiConfig()
    config.argv = list(plan.args)
    config.env = list(plan.env)
    config.inherit_stdin()
    config.inherit_stdout()
    config.inherit_stderr()
    for preopen in plan.preopens:
        try:
            config.preopen_dir(preopen.host, preopen.guest, preopen.writable)
        except wasmtime.WasmtimeError as exc:
            raise RunnerError(f"cannot preopen {preopen.host} as {preopen.guest}: {exc}") from exc
    return config


def _call(store: wasmtime.Store, linker: wasmtime.Linker, module: wasmtime.Module, entry: str) -> int:
    """Step 4: instantiate, call ``entry``; the exit status."""
    try:
        instance = linker.instantiate(store, module)
        func = instance.exports(store).get(entry)
        if not isinstance(func, wasmtime.Func):
            os.write(2, f"wasm module has no exported function {entry!r}\n".encode())
            return 1
        func(store)
    except wasmtime.ExitTrap as exc:
        return int(exc.code)
    except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
        os.write(2, f"{exc}\n".encode(errors="replace"))
        return TRAP_EXIT
    return 0


def _report(message: str) -> None:
    with contextlib.suppress(OSError):
        os.write(CTL_FD, message.encode(errors="replace") + b"\n")


def _await_start() -> bool:
    """Block until the shim says ``g``; False if it closed the socket instead (Delete, or death)."""
    while True:
        try:
            return os.read(CTL_FD, 1) == b"g"
        except InterruptedError:
            continue


def run(
    plan: RunPlan, ctl: int, stdio: tuple[int | None, int | None, int | None], *, address: str, namespace: str
) -> NoReturn:
    """The runner's whole life (in the freshly forked child); never returns."""
    code = 1
    try:
        _become_process(stdio, ctl, plan.container_id)
        if plan.placeholder:
            _report("ok")
            if _await_start():
                while True:
                    signal.pause()
            os._exit(TRAP_EXIT)
        try:
            data, digest = _module_bytes(plan, address, namespace)
            engine = wasmtime.Engine()
            module = compile_module(engine, data, digest, plan.args[0])
            store = wasmtime.Store(engine)
            if plan.memory_limit:
                store.set_limits(memory_size=plan.memory_limit)
            store.set_wasi(wasi_config(plan))
            linker = wasmtime.Linker(engine)
            linker.define_wasi()
        except RunnerError as exc:
            _report(f"error {exc}")
            os._exit(1)
        _report("ok")
        if not _await_start():
            os._exit(TRAP_EXIT)
        code = _call(store, linker, module, plan.entry)
    except BaseException as exc:
        _report(f"error {type(exc).__name__}: {exc}")
    finally:
        os._exit(code)
