"""Running one plugin per the CNI spec (section 2): environment, stdin config, result, errors.

A plugin is an executable found by its ``type`` in the bin dirs. The runtime passes the
attachment in ``CNI_*`` variables and the request config on stdin; the plugin prints a result
(ADD), nothing (DEL, CHECK, STATUS) or an error object ``{code, msg, details}`` with a
non-zero exit status. The request config is the plugin's config from the network with
``name`` and ``cniVersion`` of the network set, ``prevResult`` for all but the first plugin of
an ADD chain, and ``runtimeConfig`` holding only the capability arguments the plugin declares
in ``capabilities`` (libcni keeps the ``capabilities`` key itself, and so do we).

Every exec has a timeout; the plugin runs in its own process group, so a timeout or a
cancelled request kills the delegated IPAM plugin as well. Like libcni we retry an exec that
fails with "text file busy" (a binary being replaced under us).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import errno
import json
import logging
import os
import re
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pycontainerd.cni.config import find_plugin
from pycontainerd.cni.errors import PluginError, PluginTimeout, plugin_error
from pycontainerd.cni.results import PluginResult
from pycontainerd.errdefs import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pycontainerd.cni.config import NetworkConfList, PluginConf

log = logging.getLogger(__name__)

DEFAULT_EXEC_TIMEOUT = 60.0
CURRENT_VERSION = "1.1.0"
_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_BUSY_RETRIES = 5


@dataclass(frozen=True, slots=True)
class RuntimeConf:
    """The attachment parameters of one (container, interface) pair (libcni's ``RuntimeConf``).

    Attributes:
        container_id: ``CNI_CONTAINERID`` (the sandbox ID for the CRI).
        netns: ``CNI_NETNS``; "" when the namespace is already gone (DEL only).
        ifname: ``CNI_IFNAME``.
        args: ``CNI_ARGS`` pairs, in order.
        capability_args: capability name -> value; each plugin gets the ones it declares.
    """

    container_id: str
    netns: str
    ifname: str
    args: tuple[tuple[str, str], ...] = ()
    capability_args: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """libcni's checks on ADD: container ID syntax and a usable interface name.

        Raises:
            InvalidArgument: which of them is wrong.
        """
        if not _CONTAINER_ID.match(self.container_id):
            raise InvalidArgument(f"invalid CNI container ID {self.container_id!r}")
        name = self.ifname
        if not name or len(name) > 15 or name in (".", "..") or any(c in name for c in "/:") or not name.isprintable():
            raise InvalidArgument(f"invalid interface name {name!r}")
        if any(c.isspace() for c in name):
            raise InvalidArgument(f"invalid interface name {name!r}")


def cni_args(args: Sequence[tuple[str, str]]) -> str:
    """The ``CNI_ARGS`` value: ``K=V`` pairs joined by ``;``."""
    return ";".join(f"{k}={v}" for k, v in args)


def build_config(
    network: NetworkConfList, plugin: PluginConf, prev_result: Mapping[str, Any] | None, rt: RuntimeConf | None
) -> dict[str, Any]:
    """The request config for one plugin of ``network`` (spec section 3, "Deriving ...").

    Args:
        network: gives ``name`` and ``cniVersion``.
        plugin: the plugin's own config (not modified).
        prev_result: the result to hand over as ``prevResult``, or ``None``.
        rt: the attachment; its capability arguments fill ``runtimeConfig``.
    """
    conf = copy.deepcopy(plugin.conf)
    conf["name"] = network.name
    conf["cniVersion"] = network.cni_version
    if prev_result is not None:
        conf["prevResult"] = dict(prev_result)
    if rt is not None:
        runtime = {cap: rt.capability_args[cap] for cap in sorted(plugin.capabilities) if cap in rt.capability_args}
        if runtime:
            conf["runtimeConfig"] = runtime
    return conf


@dataclass(slots=True)
class Invoker:
    """Finds and executes plugins.

    Attributes:
        bin_dirs: where plugin binaries are looked up (also ``CNI_PATH``).
        timeout: seconds each exec may take.
    """

    bin_dirs: tuple[str, ...]
    timeout: float = DEFAULT_EXEC_TIMEOUT

    def environ(self, command: str, rt: RuntimeConf | None) -> dict[str, str]:
        """The daemon's environment with the ``CNI_*`` variables of this call on top."""
        env = dict(os.environ)
        env["CNI_COMMAND"] = command
        env["CNI_PATH"] = os.pathsep.join(self.bin_dirs)
        for key in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS"):
            env.pop(key, None)
        if rt is not None:
            env["CNI_CONTAINERID"] = rt.container_id
            env["CNI_NETNS"] = rt.netns
            env["CNI_IFNAME"] = rt.ifname
            env["CNI_ARGS"] = cni_args(rt.args)
        elif command == "VERSION":
            env.update(CNI_NETNS="dummy", CNI_IFNAME="dummy", CNI_PATH="dummy")
        return env

    async def _spawn(self, path: str, env: dict[str, str]) -> asyncio.subprocess.Process:
        for attempt in range(_BUSY_RETRIES + 1):
            try:
                return await asyncio.create_subprocess_exec(
                    path,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                    start_new_session=True,  # a timeout kills the delegated IPAM plugin too
                )
            except OSError as exc:
                if exc.errno != errno.ETXTBSY or attempt == _BUSY_RETRIES:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    async def exec(self, plugin_type: str, network: str, command: str, stdin: bytes, rt: RuntimeConf | None) -> bytes:
        """Run a plugin once and return its stdout.

        Raises:
            PluginNotFound: no such binary.
            PluginError: non-zero exit; code and messages from the plugin's error JSON.
            PluginTimeout: still running after ``timeout``; killed with its process group.
        """
        path = find_plugin(plugin_type, self.bin_dirs)
        proc = await self._spawn(path, self.environ(command, rt))
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), self.timeout)
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())
            if isinstance(exc, TimeoutError):
                raise PluginTimeout(
                    plugin=plugin_type,
                    network=network,
                    command=command,
                    code=0,
                    msg=f"timed out after {self.timeout:g}s and was killed",
                ) from None
            raise
        if err.strip():
            log.debug("cni plugin %s (%s, %s) stderr: %s", plugin_type, network, command, err.decode(errors="replace"))
        if proc.returncode != 0:
            code, msg, details = _error_fields(out, err, proc.returncode)
            raise plugin_error(
                plugin=plugin_type, network=network, command=command, code=code, msg=msg, details=details
            )
        return out

    async def add(
        self, network: NetworkConfList, plugin: PluginConf, prev: Mapping[str, Any] | None, rt: RuntimeConf
    ) -> tuple[dict[str, Any], PluginResult]:
        """ADD one plugin; return its raw result (for the next ``prevResult``) and the parsed one.

        A result without ``cniVersion`` gets the network's (libcni does the same).

        Raises:
            PluginError, PluginNotFound, PluginTimeout: see :meth:`exec`.
            InvalidResult: the plugin printed no valid result.
        """
        stdin = json.dumps(build_config(network, plugin, prev, rt)).encode()
        out = await self.exec(plugin.type, network.name, "ADD", stdin, rt)
        parsed = PluginResult.from_bytes(out, network.cni_version)
        raw: dict[str, Any] = json.loads(out)
        raw.setdefault("cniVersion", network.cni_version)
        return raw, parsed

    async def delete(
        self, network: NetworkConfList, plugin: PluginConf, prev: Mapping[str, Any] | None, rt: RuntimeConf
    ) -> None:
        """DEL one plugin."""
        stdin = json.dumps(build_config(network, plugin, prev, rt)).encode()
        await self.exec(plugin.type, network.name, "DEL", stdin, rt)

    async def check(
        self, network: NetworkConfList, plugin: PluginConf, prev: Mapping[str, Any] | None, rt: RuntimeConf
    ) -> None:
        """CHECK one plugin."""
        stdin = json.dumps(build_config(network, plugin, prev, rt)).encode()
        await self.exec(plugin.type, network.name, "CHECK", stdin, rt)

    async def status(self, network: NetworkConfList, plugin: PluginConf) -> None:
        """STATUS one plugin (CNI 1.1): raises unless it can serve ADD requests."""
        stdin = json.dumps(build_config(network, plugin, None, None)).encode()
        await self.exec(plugin.type, network.name, "STATUS", stdin, None)

    async def version(self, plugin_type: str) -> tuple[str, ...]:
        """The spec versions a plugin supports (its VERSION answer).

        Raises:
            PluginError, PluginNotFound, PluginTimeout: see :meth:`exec`.
        """
        stdin = json.dumps({"cniVersion": CURRENT_VERSION}).encode()
        try:
            out = await self.exec(plugin_type, "", "VERSION", stdin, None)
        except PluginError as exc:
            if exc.msg == "unknown CNI_COMMAND: VERSION":  # a plugin older than VERSION itself
                return ("0.1.0",)
            raise
        try:
            versions = json.loads(out).get("supportedVersions")
        except (ValueError, AttributeError):
            versions = None
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise plugin_error(
                plugin=plugin_type, network="", command="VERSION", code=6, msg=f"bad VERSION answer {out[:200]!r}"
            )
        return tuple(versions)


def _parse_error(text: bytes) -> tuple[int, str, str] | None:
    """``(code, msg, details)`` from an error object, or ``None`` if ``text`` is not one."""
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict) or not ("msg" in raw or "code" in raw):
        return None
    code = raw.get("code", 0)
    return (
        code if isinstance(code, int) and not isinstance(code, bool) else 0,
        str(raw.get("msg") or ""),
        str(raw.get("details") or ""),
    )


def _error_fields(stdout: bytes, stderr: bytes, status: int | None) -> tuple[int, str, str]:
    """``(code, msg, details)`` of a failed plugin, like libcni's ``pluginErr``.

    The spec puts the error object on stdout; some plugins print it on stderr instead.
    """
    out, err = stdout.strip(), stderr.strip()
    for text in (out, err):
        fields = _parse_error(text) if text else None
        if fields is not None:
            code, msg, details = fields
            return code, msg or f"exit status {status}", details
    if out:
        shown = out[:500].decode(errors="replace")
        return 0, f"netplugin failed but error parsing its diagnostic message {shown!r}", ""
    if err:
        return 0, f"netplugin failed: {err.decode(errors='replace')!r}: exit status {status}", ""
    return 0, f"netplugin failed with no error message: exit status {status}", ""
