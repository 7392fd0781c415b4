"""Writing a network config for the node's pod CIDR: ``conf_template`` and a default bridge.

When kubelet reports the node's pod CIDR (CRI ``UpdateRuntimeConfig``) and no network config
is loaded, containerd renders its ``conf_template`` file (a Go ``text/template``) with
``.PodCIDR`` (the first CIDR), ``.PodCIDRRanges`` (all of them) and ``.Routes`` (``0.0.0.0/0``
and/or ``::/0``) and writes ``<conf dir>/10-containerd-net.conflist``.

We read the part of Go's template language such templates use: ``{{.Field}}``, ``{{$var}}``,
``{{.}}``, ``{{range [$i,] $x := .Field}}`` / ``{{range .Field}}``, ``{{if X}}``,
``{{else}}``, ``{{end}}``, comments and ``{{-``/``-}}`` trimming. Anything else is refused
with a clear error rather than rendered wrongly. :func:`default_bridge_conflist` gives a
config without any template: bridge + host-local + portmap (the loopback network is always
added separately, see :mod:`pycontainerd.cni.config`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pycontainerd.cni.config import parse_conflist
from pycontainerd.cni.errors import InvalidConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

CONF_FILE_NAME = "10-containerd-net.conflist"
DEFAULT_NETWORK_NAME = "containerd-net"
DEFAULT_BRIDGE = "cni0"

_ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.DOTALL)
_RANGE = re.compile(r"^range\s+(?:(\$\w+)\s*(?:,\s*(\$\w+))?\s*:=\s*)?(\S+)$")


def split_cidrs(pod_cidr: str | Sequence[str]) -> list[str]:
    """``"10.0.0.0/24, fd00::/64"`` -> the CIDRs, each checked.

    Raises:
        ValueError: an entry is not a CIDR.
    """
    items = pod_cidr.split(",") if isinstance(pod_cidr, str) else list(pod_cidr)
    cidrs = [c.strip() for c in items if c.strip()]
    for c in cidrs:
        ipaddress.ip_network(c, strict=False)
    return cidrs


def default_routes(cidrs: Sequence[str]) -> list[str]:
    """containerd's ``getRoutes``: a default route per address family present."""
    families = {ipaddress.ip_network(c, strict=False).version for c in cidrs}
    return [r for v, r in ((4, "0.0.0.0/0"), (6, "::/0")) if v in families]


@dataclass(slots=True)
class _Node:
    kind: str  # "text", "print", "range", "if"
    arg: str = ""
    names: tuple[str, ...] = ()
    body: list[_Node] = field(default_factory=list)
    orelse: list[_Node] = field(default_factory=list)


def _parse(text: str) -> list[_Node]:
    root: list[_Node] = []
    stack: list[tuple[_Node | None, list[_Node]]] = [(None, root)]
    pos = 0
    for m in _ACTION.finditer(text):
        chunk = text[pos : m.start()]
        if m.group(1):
            chunk = chunk.rstrip()
        if chunk:
            stack[-1][1].append(_Node("text", chunk))
        pos = m.end()
        if m.group(3):
            rest = text[pos:]
            pos += len(rest) - len(rest.lstrip())
        action = m.group(2)
        if action.startswith("/*") and action.endswith("*/"):
            continue
        if action.startswith(("range ", "if ")):
            node = _Node("if", action[3:].strip()) if action.startswith("if ") else _range(action)
            stack[-1][1].append(node)
            stack.append((node, node.body))
        elif action == "else":
            owner = stack[-1][0]
            if owner is None or stack[-1][1] is owner.orelse:
                raise ValueError("{{else}} outside range/if")
            stack[-1] = (owner, owner.orelse)
        elif action == "end":
            if len(stack) == 1:
                raise ValueError("{{end}} without range/if")
            stack.pop()
        else:
            stack[-1][1].append(_Node("print", action))
    if len(stack) != 1:
        raise ValueError("missing {{end}}")
    tail = text[pos:]
    if tail:
        root.append(_Node("text", tail))
    return root


def _range(action: str) -> _Node:
    m = _RANGE.match(action)
    if not m:
        raise ValueError(f"unsupported range {action!r}")
    names = tuple(n for n in (m.group(1), m.group(2)) if n)
    if len(names) == 1:  # "range $x := ..." binds the element, not the index
        names = ("", names[0])
    return _Node("range", m.group(3), names)


def _value(expr: str, dot: Any, scope: dict[str, Any]) -> Any:
    if expr == ".":
        return dot
    if expr.startswith("$"):
        if expr not in scope:
            raise ValueError(f"undefined variable {expr}")
        return scope[expr]
    if expr.startswith(".") and expr[1:].isidentifier() and isinstance(dot, dict):
        if expr[1:] not in dot:
            raise ValueError(f"unknown field {expr}")
        return dot[expr[1:]]
    raise ValueError(f"unsupported template expression {expr!r}")


def _render(nodes: list[_Node], dot: Any, scope: dict[str, Any], out: list[str]) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.arg)
        elif node.kind == "print":
            out.append(str(_value(node.arg, dot, scope)))
        elif node.kind == "if":
            _render(node.body if _value(node.arg, dot, scope) else node.orelse, dot, scope, out)
        else:
            items = _value(node.arg, dot, scope)
            if not isinstance(items, list):
                raise ValueError(f"range over non-list {node.arg}")
            for i, item in enumerate(items):
                inner = dict(scope)
                index_name, item_name = (*node.names, "", "")[:2]
                if index_name:
                    inner[index_name] = i
                if item_name:
                    inner[item_name] = item
                _render(node.body, item, inner, out)
            if not items:
                _render(node.orelse, dot, scope, out)


def render_template(text: str, pod_cidr: str | Sequence[str]) -> str:
    """Render a containerd ``conf_template`` for the given pod CIDR(s).

    Raises:
        ValueError: a bad CIDR, or template syntax outside the supported subset.
    """
    cidrs = split_cidrs(pod_cidr)
    if not cidrs:
        raise ValueError("no pod CIDR")
    data = {"PodCIDR": cidrs[0], "PodCIDRRanges": cidrs, "Routes": default_routes(cidrs)}
    out: list[str] = []
    _render(_parse(text), data, {"$": data}, out)
    return "".join(out)


def default_bridge_conflist(
    pod_cidr: str | Sequence[str],
    *,
    name: str = DEFAULT_NETWORK_NAME,
    bridge: str = DEFAULT_BRIDGE,
    cni_version: str = "1.0.0",
    ipam_data_dir: str = "",
    mtu: int = 0,
) -> str:
    """A bridge network for the pod CIDR(s): gateway + masquerade + hairpin, host-local IPAM,
    and portmap for ``hostPort`` (which also makes ``127.0.0.1:hostPort`` work through its
    ``snat``/``route_localnet`` handling).

    Raises:
        ValueError: no or bad CIDR.
    """
    cidrs = split_cidrs(pod_cidr)
    if not cidrs:
        raise ValueError("no pod CIDR")
    ipam: dict[str, Any] = {
        "type": "host-local",
        "ranges": [[{"subnet": c}] for c in cidrs],
        "routes": [{"dst": r} for r in default_routes(cidrs)],
    }
    if ipam_data_dir:
        ipam["dataDir"] = ipam_data_dir
    main: dict[str, Any] = {
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": True,
        "hairpinMode": True,
        "ipam": ipam,
    }
    if mtu:
        main["mtu"] = mtu
    conf = {
        "cniVersion": cni_version,
        "name": name,
        "plugins": [main, {"type": "portmap", "capabilities": {"portMappings": True}}],
    }
    return json.dumps(conf, indent=2) + "\n"


def write_conf_file(conf_dir: str | os.PathLike[str], content: str, name: str = CONF_FILE_NAME) -> Path:
    """Check ``content`` is a valid network config list and write it atomically into ``conf_dir``.

    Raises:
        InvalidConfig: ``content`` does not parse (nothing is written).
    """
    target = Path(conf_dir) / name
    parse_conflist(content.encode(), f"rendered {target}")
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def render_file(template_path: str | os.PathLike[str], pod_cidr: str | Sequence[str]) -> str:
    """Render a ``conf_template`` file.

    Raises:
        InvalidConfig: the file cannot be read or rendered (the message names it).
    """
    try:
        return render_template(Path(template_path).read_text(), pod_cidr)
    except (OSError, ValueError) as exc:
        raise InvalidConfig(f"failed to render cni config template {os.fspath(template_path)!r}: {exc}") from None
