"""The ``io.kubernetes.cri.*`` annotations containerd puts in specs, and pass-through annotations.

Runtimes such as Kata read these to tell pause containers from workloads and to size a pod VM.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

CONTAINER_TYPE = "io.kubernetes.cri.container-type"
CONTAINER_TYPE_SANDBOX = "sandbox"
CONTAINER_TYPE_CONTAINER = "container"
SANDBOX_ID = "io.kubernetes.cri.sandbox-id"
SANDBOX_CPU_PERIOD = "io.kubernetes.cri.sandbox-cpu-period"
SANDBOX_CPU_QUOTA = "io.kubernetes.cri.sandbox-cpu-quota"
SANDBOX_CPU_SHARES = "io.kubernetes.cri.sandbox-cpu-shares"
SANDBOX_MEMORY = "io.kubernetes.cri.sandbox-memory"
SANDBOX_LOG_DIR = "io.kubernetes.cri.sandbox-log-directory"
SANDBOX_NAMESPACE = "io.kubernetes.cri.sandbox-namespace"
SANDBOX_UID = "io.kubernetes.cri.sandbox-uid"
SANDBOX_NAME = "io.kubernetes.cri.sandbox-name"
CONTAINER_NAME = "io.kubernetes.cri.container-name"
IMAGE_NAME = "io.kubernetes.cri.image-name"
SANDBOX_IMAGE_NAME = "io.kubernetes.cri.podsandbox.image-name"


@lru_cache(maxsize=256)
def _pattern(pattern: str) -> re.Pattern[str] | None:
    """A Go ``path.Match`` pattern as a regex: ``*`` and ``?`` stop at "/", classes as in Go."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                return None  # Go reports ErrBadPattern: the pattern matches nothing
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append("[" + ("^/" if negate else "") + body.replace("[", "\\[") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def matches(pattern: str, name: str) -> bool:
    """Whether ``name`` matches a runtime's annotation pattern (Go ``path.Match`` rules)."""
    if not any(c in pattern for c in "*?[\\"):
        return pattern == name
    compiled = _pattern(pattern)
    return compiled is not None and compiled.fullmatch(name) is not None


def passthrough(annotations: Mapping[str, str], patterns: Iterable[str]) -> dict[str, str]:
    """The annotations whose key matches one of ``patterns`` (a handler's ``pod_annotations``...)."""
    wanted = tuple(patterns)
    return {str(k): str(v) for k, v in annotations.items() if any(matches(p, str(k)) for p in wanted)}


def default_annotations(
    sandbox_id: str, sandbox_config: Any, *, container_name: str = "", image_name: str = "", sandbox: bool
) -> dict[str, str]:
    """containerd's CRI annotations for a pause container (``sandbox``) or a workload container."""
    meta = sandbox_config.metadata
    out = {
        SANDBOX_ID: sandbox_id,
        SANDBOX_NAMESPACE: str(meta.namespace),
        SANDBOX_UID: str(meta.uid),
        SANDBOX_NAME: str(meta.name),
    }
    if sandbox:
        out[SANDBOX_LOG_DIR] = str(sandbox_config.log_directory)
        out[SANDBOX_IMAGE_NAME] = image_name
    else:
        out[CONTAINER_NAME] = container_name
        out[IMAGE_NAME] = image_name
    out[CONTAINER_TYPE] = CONTAINER_TYPE_SANDBOX if sandbox else CONTAINER_TYPE_CONTAINER
    return out


def sandbox_sizing(resources: Any) -> dict[str, str]:
    """The pod-size annotations for the resources kubelet sums over the pod's containers."""
    return {
        SANDBOX_CPU_PERIOD: str(resources.cpu_period),
        SANDBOX_CPU_QUOTA: str(resources.cpu_quota),
        SANDBOX_CPU_SHARES: str(resources.cpu_shares),
        SANDBOX_MEMORY: str(resources.memory_limit_in_bytes),
    }


def set_annotations(spec: dict[str, Any], annotations: Mapping[str, str]) -> None:
    """Merge ``annotations`` into the spec's (later keys win)."""
    if annotations:
        spec.setdefault("annotations", {}).update(annotations)
