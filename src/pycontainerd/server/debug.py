"""Looking inside a running daemon: stack dumps and the debug socket.

* ``kill -USR1 <pid>`` writes the stack of every asyncio task and every thread to the log
  (containerd dumps its goroutines on the same signal). ``kill -USR2`` makes Python's
  ``faulthandler`` write the threads' stacks to stderr straight from the signal handler: it works
  even when the event loop itself is stuck.
* ``[debug] address`` (a unix socket path; off when empty, as in containerd) serves HTTP:

  - ``GET /debug/stacks``: the same dump as USR1, as text;
  - ``GET /debug/vars``: JSON with the version, pid, uptime, memory, task and thread counts,
    and every plugin's status (containerd's ``/debug/vars`` is Go's expvar).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

from pycontainerd.version import VERSION

if TYPE_CHECKING:
    from pathlib import Path

    from aiohttp import web

    from pycontainerd.plugin.registration import PluginSet

log = logging.getLogger(__name__)

STARTED = time.time()


def dump_stacks() -> str:
    """Every asyncio task of the running loop and every thread, with its stack."""
    out = io.StringIO()
    try:
        tasks = sorted(asyncio.all_tasks(), key=lambda t: t.get_name())
    except RuntimeError:  # no running loop
        tasks = []
    out.write(f"=== asyncio tasks: {len(tasks)} ===\n")
    for task in tasks:
        coro = task.get_coro()
        name = getattr(coro, "__qualname__", repr(coro))
        out.write(f"\n--- task {task.get_name()} ({name}){' done' if task.done() else ''} ---\n")
        frames = task.get_stack()
        if not frames:
            out.write("  (no frames: not started or finished)\n")
        for frame in frames:
            out.write("".join(traceback.format_stack(frame, limit=1)))
    threads = {t.ident: t for t in threading.enumerate()}
    current = sys._current_frames()
    out.write(f"\n=== threads: {len(current)} ===\n")
    for ident, frame in current.items():
        thread = threads.get(ident)
        out.write(f"\n--- thread {thread.name if thread else ident} ---\n")
        out.write("".join(traceback.format_stack(frame)))
    return out.getvalue()


def log_stacks() -> None:
    """The USR1 handler: the dump, as one log record between markers."""
    log.info("=== BEGIN stack dump ===\n%s=== END stack dump ===", dump_stacks())


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def debug_vars(plugins: PluginSet | None) -> dict[str, Any]:
    """What ``/debug/vars`` answers."""
    statuses: dict[str, str] = {}
    for plugin in plugins or []:
        statuses[plugin.registration.uri] = "ok" if plugin.ok else f"error: {plugin.error}"
    try:
        task_count = len(asyncio.all_tasks())
    except RuntimeError:
        task_count = 0
    return {
        "version": VERSION,
        "pid": os.getpid(),
        "cmdline": sys.argv,
        "uptime_seconds": round(time.time() - STARTED, 3),
        "rss_bytes": _rss_bytes(),
        "asyncio_tasks": task_count,
        "threads": threading.active_count(),
        "plugins": statuses,
    }


async def serve_debug(path: Path, plugins: PluginSet | None) -> web.AppRunner:
    """Serve the debug endpoints on the unix socket ``path``; returns the runner to clean up."""
    from aiohttp import web  # only when configured: aiohttp costs a tenth of a second to import

    async def stacks(_request: web.Request) -> web.Response:
        return web.Response(text=dump_stacks())

    async def variables(_request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(debug_vars(plugins), indent=2), content_type="application/json")

    app = web.Application()
    app.router.add_get("/debug/stacks", stacks)
    app.router.add_get("/debug/vars", variables)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, str(path)).start()
    log.info("debug endpoint listening", extra={"address": str(path)})
    return runner
