"""``pycontainerd oci-hook -- CMD ARGS...``: run an OCI hook with container facts filled in.

runc runs hooks with the container state (JSON) on stdin. This command reads it, loads the
bundle's ``config.json`` for the root path, replaces the placeholders below in the hook's
arguments and in the environment, and ``exec``s the hook:

``{{id}}``, ``{{pid}}``, ``{{bundle}}``, ``{{rootfs}}`` (absolute), ``{{status}}`` and
``{{annotation "key"}}`` (spaces inside the braces are allowed, as in containerd's templates).
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

_PLACEHOLDER = re.compile(r"\{\{\s*(id|pid|bundle|rootfs|status|annotation\s+\"([^\"]*)\")\s*\}\}")


class HookError(Exception):
    """The hook cannot be run; the message says why."""


def _facts(state: dict[str, Any]) -> dict[str, str]:
    bundle = str(state.get("bundle", ""))
    root = "rootfs"
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as fh:
            root = (json.load(fh).get("root") or {}).get("path", root)
    except (OSError, ValueError) as exc:
        raise HookError(f"cannot read the bundle's config.json: {exc}") from exc
    return {
        "id": str(state.get("id", "")),
        "pid": str(state.get("pid", 0)),
        "bundle": bundle,
        "rootfs": root if os.path.isabs(root) else os.path.join(bundle, root),
        "status": str(state.get("status", "")),
    }


def render(text: str, state: dict[str, Any], facts: dict[str, str]) -> str:
    """Replace the placeholders in ``text``."""
    annotations = state.get("annotations") or {}

    def replace(match: re.Match[str]) -> str:
        if match.group(2) is not None:
            return str(annotations.get(match.group(2), ""))
        return facts[match.group(1)]

    return _PLACEHOLDER.sub(replace, text)


def run_hook(argv: list[str], stdin: bytes) -> None:
    """Render and exec the hook (returns only on error)."""
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise HookError("no hook command given: pycontainerd oci-hook -- CMD ARGS...")
    try:
        state = json.loads(stdin)
    except ValueError as exc:
        raise HookError(f"invalid container state on stdin: {exc}") from exc
    facts = _facts(state)
    args = [render(a, state, facts) for a in argv]
    env = {k: render(v, state, facts) for k, v in os.environ.items()}
    os.execve(args[0], args, env)


def main(argv: list[str]) -> int:
    """Entry point of the subcommand."""
    try:
        run_hook(argv, sys.stdin.buffer.read())
    except (HookError, OSError) as exc:
        print(f"pycontainerd oci-hook: {exc}", file=sys.stderr)
    return 1
