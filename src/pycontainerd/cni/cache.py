"""The on-disk result cache: what ADD did, so DEL and CHECK can hand it back after a restart.

The spec makes the runtime keep the final ADD result of each attachment (DEL and CHECK get it
as ``prevResult``). We store it the way libcni does, one JSON file per attachment at
``<cache dir>/results/<network>-<container id>-<ifname>`` (mode 0600), so ``cnitool`` and
other libcni users can read our cache and vice versa::

    {"kind": "cniCacheV1", "containerId": ..., "config": <network config, base64>,
     "ifName": ..., "networkName": ..., "netns": ..., "cniArgs": [[k, v], ...],
     "capabilityArgs": {...}, "result": {...}}

Besides the result we keep the CNI_ARGS and capability arguments ADD used (DEL reuses them)
and the network config bytes (DEL of an attachment whose network left the conf dir). Files
are written to a temporary name and renamed, so a crash never leaves half a record.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pycontainerd.cni.invoke import RuntimeConf

log = logging.getLogger(__name__)

CACHE_KIND = "cniCacheV1"


@dataclass(frozen=True, slots=True)
class CachedAttachment:
    """One cached attachment (libcni's ``cachedInfo``).

    Attributes:
        container_id: ``CNI_CONTAINERID`` of the ADD.
        network: the network name.
        ifname: ``CNI_IFNAME`` of the ADD.
        config: the network config bytes the ADD ran with.
        netns: ``CNI_NETNS`` of the ADD.
        cni_args: the ``CNI_ARGS`` pairs of the ADD.
        capability_args: the capability arguments of the ADD.
        result: the final result JSON, or ``None`` if the record has none.
    """

    container_id: str
    network: str
    ifname: str
    config: bytes = b""
    netns: str = ""
    cni_args: tuple[tuple[str, str], ...] = ()
    capability_args: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None


def _decode(raw: Any) -> CachedAttachment | None:
    if not isinstance(raw, dict) or raw.get("kind") != CACHE_KIND:
        return None
    try:
        config = base64.b64decode(raw.get("config") or "", validate=True)
    except (binascii.Error, TypeError, ValueError):
        config = b""
    args = raw.get("cniArgs") or []
    result = raw.get("result")
    caps = raw.get("capabilityArgs")
    return CachedAttachment(
        container_id=str(raw.get("containerId", "")),
        network=str(raw.get("networkName", "")),
        ifname=str(raw.get("ifName", "")),
        config=config,
        netns=str(raw.get("netns", "")),
        cni_args=tuple((str(k), str(v)) for k, v in args if isinstance(k, str)),
        capability_args=caps if isinstance(caps, dict) else {},
        result=result if isinstance(result, dict) else None,
    )


class ResultCache:
    """The result records under one cache directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @property
    def results_dir(self) -> Path:
        """Where the records live."""
        return self.directory / "results"

    def path(self, network: str, container_id: str, ifname: str) -> Path:
        """The record file of one attachment."""
        for part in (network, container_id, ifname):
            if not part or "/" in part or part.startswith("."):
                raise ValueError(f"bad cache key {network!r} {container_id!r} {ifname!r}")
        return self.results_dir / f"{network}-{container_id}-{ifname}"

    def put(self, network: str, config: bytes, rt: RuntimeConf, result: dict[str, Any]) -> None:
        """Record the final ADD result of an attachment (replacing any older record)."""
        record = {
            "kind": CACHE_KIND,
            "containerId": rt.container_id,
            "config": base64.b64encode(config).decode(),
            "ifName": rt.ifname,
            "networkName": network,
            "netns": rt.netns,
            "cniArgs": [list(kv) for kv in rt.args],
            "capabilityArgs": dict(rt.capability_args),
            "result": result,
        }
        target = self.path(network, rt.container_id, rt.ifname)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def get(self, network: str, container_id: str, ifname: str) -> CachedAttachment | None:
        """The record of one attachment; ``None`` if missing or unreadable."""
        try:
            data = self.path(network, container_id, ifname).read_bytes()
        except (OSError, ValueError):
            return None
        try:
            return _decode(json.loads(data))
        except (ValueError, UnicodeDecodeError):
            log.warning("ignoring corrupt CNI cache record %s", self.path(network, container_id, ifname))
            return None

    def delete(self, network: str, container_id: str, ifname: str) -> None:
        """Drop the record of one attachment; a missing one is fine."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            self.path(network, container_id, ifname).unlink()

    def attachments(self, container_id: str = "") -> list[CachedAttachment]:
        """Every readable record, or those of one container, in file name order."""
        try:
            names = sorted(os.listdir(self.results_dir))
        except FileNotFoundError:
            return []
        found: list[CachedAttachment] = []
        for name in names:
            if name.startswith(".tmp-") or (container_id and f"-{container_id}-" not in name):
                continue
            try:
                record = _decode(json.loads((self.results_dir / name).read_bytes()))
            except (OSError, ValueError, UnicodeDecodeError):
                continue
            if record is None or not record.network or not record.ifname:
                continue
            if container_id and record.container_id != container_id:
                continue
            found.append(record)
        return found
