"""Running an SDK plugin as a program: :func:`run_plugin` and ``python -m pycontainerd.nri``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import logging
import os
import sys
from typing import TYPE_CHECKING

from .errors import NRIError
from .plugin import Plugin

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger(__name__)


def _parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Run an NRI plugin.")
    parser.add_argument("--socket", dest="socket_path", help="the runtime's NRI socket (when not launched by it)")
    parser.add_argument("--name", help="plugin name (default: $NRI_PLUGIN_NAME or the program name)")
    parser.add_argument("--idx", help="two-digit plugin index (default: $NRI_PLUGIN_IDX)")
    parser.add_argument("--config", help="configuration file, used when the runtime sends none")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO, to stderr)")
    return parser


def run_plugin(plugin_cls: type[Plugin], argv: Sequence[str] | None = None) -> int:
    """Parse ``--socket/--name/--idx/--config``, run the plugin until the runtime goes away.

    Returns:
        The process exit status (0 after a normal disconnect, 1 if registration failed).
    """
    args = _parser().parse_args(argv)
    return _run(plugin_cls, args)


def _run(plugin_cls: type[Plugin], args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    plugin = plugin_cls(name=args.name, index=args.idx, socket_path=args.socket_path)
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            plugin.default_config = f.read()
    try:
        reason = asyncio.run(plugin.run())
    except NRIError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
    log.info("runtime connection closed: %s", reason)
    return 0


def load_plugin_class(target: str) -> type[Plugin]:
    """Resolve ``module:Class`` or ``path/to/file.py:Class`` (Class defaults to the only Plugin subclass).

    Raises:
        NRIError: If nothing suitable is found.
    """
    location, _, attr = target.partition(":")
    if location.endswith(".py") or os.sep in location:
        spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(location))[0], location)
        if spec is None or spec.loader is None:
            raise NRIError(f"cannot load {location}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(location)
    if attr:
        found = getattr(module, attr, None)
        candidates = [found] if isinstance(found, type) and issubclass(found, Plugin) else []
    else:
        candidates = [
            v for v in vars(module).values() if isinstance(v, type) and issubclass(v, Plugin) and v is not Plugin
        ]
    if len(candidates) != 1:
        raise NRIError(f"{target}: expected exactly one Plugin subclass, found {len(candidates)}")
    cls: type[Plugin] = candidates[0]
    return cls


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pycontainerd.nri MODULE[:CLASS] [--socket PATH] [--name N] [--idx NN]``."""
    parser = _parser(prog="python -m pycontainerd.nri")
    parser.add_argument("target", help="module:Class or file.py[:Class] of the plugin to run")
    args = parser.parse_args(argv)
    try:
        cls = load_plugin_class(args.target)
    except (NRIError, ImportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _run(cls, args)
