"""``pycontainerd``: the daemon, and its ``config`` subcommands.

The flags are containerd's, so scripts and unit files written for containerd work::

    pycontainerd [-c FILE] [-a ADDRESS] [--root DIR] [--state DIR] [-l LEVEL]
    pycontainerd config default       print a complete default config.toml
    pycontainerd config dump          print the effective config (file + imports + flags)
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import os
import signal
import socket
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pycontainerd import __version__
from pycontainerd import version as pkgversion
from pycontainerd.config import loader, render
from pycontainerd.config.model import Config, ConfigError
from pycontainerd.errdefs import ContainerdError
from pycontainerd.plugin.builtins import PluginLoadError, all_registrations, load_plugin_dir
from pycontainerd.plugin.proxy import proxy_registrations
from pycontainerd.server import logging as daemon_logging
from pycontainerd.server.daemon import Daemon, StartupError, decode_plugin_configs

if TYPE_CHECKING:
    from pycontainerd.plugin.registration import Registration

DEFAULT_CONFIG_PATH = Path("/etc/pycontainerd/config.toml")
DEFAULT_TTRPC_ADDRESS = "/run/pycontainerd/pycontainerd.sock.ttrpc"

DESCRIPTION = """\
pycontainerd: containerd, the container runtime daemon, in Python.

Serves containerd's gRPC API on a unix socket, so the real `ctr`, nerdctl and the
containerd clients can use it, and serves the Kubernetes CRI on the same socket. Defaults never
collide with a containerd on the same host: root /var/lib/pycontainerd, state /run/pycontainerd, socket
/run/pycontainerd/pycontainerd.sock.
"""

EPILOG = """\
examples:
  pycontainerd                               run with /etc/pycontainerd/config.toml if present
  pycontainerd -c config.toml -l debug       run with a containerd-style (version 2) config
  pycontainerd config default > config.toml  write a complete default config
  ctr -a /run/pycontainerd/pycontainerd.sock version
"""


class _VersionAction(argparse.Action):
    """Prints the version; the git revision is looked up only when asked (not at every start)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(f"pycontainerd {pkgversion.VERSION} {pkgversion.revision()}")
        parser.exit()


def _add_global_flags(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=default,
        help=f"path to the configuration file (default {DEFAULT_CONFIG_PATH} if it exists)",
    )
    parser.add_argument("-a", "--address", default=default, help="address of the gRPC socket ([grpc] address)")
    parser.add_argument("--root", default=default, help="directory for persistent data (root)")
    parser.add_argument("--state", default=default, help="directory for runtime state (state)")
    parser.add_argument(
        "-l",
        "--log-level",
        default=default,
        help="log level: trace, debug, info, warn, error, fatal, panic ([debug] level)",
    )
    parser.add_argument("--log-format", default=default, choices=["text", "json"], help="log format ([debug] format)")
    parser.add_argument(
        "--strict",
        action="store_true",
        default=default,
        help="refuse unknown keys and sections in the configuration instead of warning about them",
    )


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="pycontainerd",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-v",
        "--version",
        action="version",
        version=f"pycontainerd {pkgversion.VERSION} {pkgversion.revision()}",
    )
    _add_global_flags(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    cfg = sub.add_parser("config", help="print the default or the effective configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    default = cfg_sub.add_parser("default", help="print a complete default config.toml (version 2)")
    _add_global_flags(default, suppress=True)
    dump = cfg_sub.add_parser("dump", help="print the effective configuration: file, imports and flags merged")
    explain = cfg_sub.add_parser(
        "explain", help="print every effective value with where it came from (default, which file, or a flag)"
    )
    migrate = cfg_sub.add_parser(
        "migrate",
        help="print a config file of another version (1, or containerd 2.x's 3) in the version 2 layout",
        description="Reads the file named by -c/--config (version 1, 2 or 3) and prints it as version 2, with "
        "plugin sections under their full names and containerd 2.x's split CRI sections merged back into "
        'plugins."io.containerd.grpc.v1.cri". What moved is listed on stderr.',
    )
    for command in (dump, explain, migrate):
        _add_global_flags(command, suppress=True)
    publish = sub.add_parser(
        "publish",
        help="forward one event (a serialized Any on stdin) to a daemon's ttrpc socket; shims call this",
        description="The -publish-binary hook of runtime v2 shims: reads a serialized google.protobuf.Any from "
        "stdin and forwards it as an event, like `containerd publish`. --address is the ttrpc socket.",
    )
    publish.add_argument("--topic", required=True, help="event topic, e.g. /tasks/exit")
    publish.add_argument("--namespace", required=True, help="namespace the event belongs to")
    hook = sub.add_parser(
        "oci-hook",
        help='run an OCI hook with {{pid}}, {{id}}, {{rootfs}}, {{bundle}}, {{annotation "k"}} filled in',
        description="Reads the container state runc gives hooks on stdin, fills the placeholders in the hook's "
        "arguments and environment, and execs it: pycontainerd oci-hook -- /usr/bin/my-hook {{pid}} {{rootfs}}",
    )
    hook.add_argument("hook", nargs=argparse.REMAINDER, help="-- then the hook command and its arguments")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.address:
        out["grpc"] = {"address": args.address}
    if args.root:
        out["root"] = args.root
    if args.state:
        out["state"] = args.state
    debug: dict[str, str] = {}
    if args.log_level:
        debug["level"] = args.log_level
    if args.log_format:
        debug["format"] = args.log_format
    if debug:
        out["debug"] = debug
    return out


def load_config(args: argparse.Namespace) -> loader.Loaded:
    """The config named by the flags (or the default file, or built-in defaults)."""
    path: Path | None = args.config
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    loaded = loader.load(path, overrides=_overrides(args))
    daemon_logging.parse_level(loaded.config.debug.level)  # a bad level is a config error
    return loaded


def registrations_for(config: Config) -> list[Registration]:
    """Built-in, entry-point and ``plugin_dir`` registrations."""
    regs = all_registrations()
    if config.plugin_dir:
        regs += load_plugin_dir(Path(config.plugin_dir))
    # Proxies first: the metadata plugin wraps every snapshotter registered before it.
    return proxy_registrations(config.proxy_plugins) + regs


async def _run(loaded: loader.Loaded) -> int:
    daemon = Daemon(loaded.config, registrations_for(loaded.config), warnings=list(loaded.warnings))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    from pycontainerd.server.debug import log_stacks

    loop.add_signal_handler(signal.SIGUSR1, log_stacks)  # like containerd's goroutine dump
    try:
        await daemon.start()
    except BaseException:
        await daemon.stop()
        raise
    sd_notify(f"READY=1\nMAINPID={os.getpid()}")
    await stop.wait()
    logging.getLogger("pycontainerd").info("stopping on signal")
    sd_notify("STOPPING=1")
    await daemon.stop()
    return 0


def sd_notify(state: str) -> bool:
    """Tell systemd (``Type=notify`` units: ``$NOTIFY_SOCKET``) about our state; False when not under it."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), address)
    except OSError as exc:
        logging.getLogger("pycontainerd").warning("cannot notify systemd at %s: %s", address, exc)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Run the ``pycontainerd`` command."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "config":
            return _config_command(args)
        if args.command == "oci-hook":
            from pycontainerd.cmd import ocihook

            return ocihook.main(list(args.hook))
        if args.command == "publish":
            from pycontainerd.cmd.publish import publish

            return publish(args.address or DEFAULT_TTRPC_ADDRESS, args.topic, args.namespace, sys.stdin.buffer.read())
        loaded = load_config(args)
        if args.strict:
            checked = list(loaded.warnings)
            decode_plugin_configs(loaded.config, registrations_for(loaded.config), checked)
            if strict_violations(checked):
                raise ConfigError(
                    "unknown keys refused (--strict): "
                    + "; ".join(w.removesuffix(" ignored") for w in strict_violations(checked))
                )
    except (ConfigError, ValueError, PluginLoadError) as exc:
        print(f"pycontainerd: invalid configuration: {exc}", file=sys.stderr)
        return 1
    daemon_logging.setup(loaded.config.debug.level, loaded.config.debug.format)
    faulthandler.register(signal.SIGUSR2, all_threads=True)  # threads' stacks even when the loop is stuck
    try:
        return asyncio.run(_run(loaded))
    except (ConfigError, StartupError, ContainerdError, PluginLoadError) as exc:
        logging.getLogger("pycontainerd").critical("containerd: %s", exc)
        print(f"pycontainerd: {exc}", file=sys.stderr)
        return 1


UNKNOWN_KEY_WARNINGS = ("unknown config key", "config for unknown plugin")


def strict_violations(warnings: list[str]) -> list[str]:
    """The warnings ``--strict`` turns into errors: keys and plugin sections nothing reads."""
    return [w for w in warnings if w.startswith(UNKNOWN_KEY_WARNINGS)]


def _migrate_command(args: argparse.Namespace) -> int:
    import tomli_w

    from pycontainerd.config.migrate import known_plugin_ids, migrate

    path: Path | None = args.config
    if path is None:
        raise ConfigError("config migrate needs the file to convert: -c/--config FILE")
    try:
        with path.open("rb") as fh:
            table = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    migrated, notes = migrate(table, known=known_plugin_ids([r.uri for r in all_registrations()]))
    for note in notes:
        print(f"# {note}", file=sys.stderr)
    ordered: dict[str, Any] = {"version": migrated.pop("version")}
    ordered.update({k: v for k, v in migrated.items() if not isinstance(v, dict)})
    ordered.update({k: v for k, v in migrated.items() if isinstance(v, dict)})
    print(tomli_w.dumps(ordered, multiline_strings=False), end="")
    return 0


def _config_command(args: argparse.Namespace) -> int:
    if args.config_command == "default":
        print(render.render(Config(), all_registrations()), end="")
        return 0
    if args.config_command == "migrate":
        return _migrate_command(args)
    loaded = load_config(args)
    registrations = registrations_for(loaded.config)
    resolved = decode_plugin_configs(loaded.config, registrations, loaded.warnings)
    for warning in loaded.warnings:
        print(f"# warning: {warning}", file=sys.stderr)
    if getattr(args, "strict", False) and strict_violations(loaded.warnings):
        raise ConfigError(
            "unknown keys refused (--strict): "
            + "; ".join(w.removesuffix(" ignored") for w in strict_violations(loaded.warnings))
        )
    if args.config_command == "explain":
        table = render.full_table(loaded.config, registrations, resolved=resolved)
        print(render.explain(table, loaded.sources), end="")
        return 0
    print(render.render(loaded.config, registrations, resolved=resolved), end="")
    return 0


__all__ = ["__version__", "main"]
