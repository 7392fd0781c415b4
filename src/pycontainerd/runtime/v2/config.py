"""``[plugins."io.containerd.runtime.v2.task"]``: which shim serves each runtime, with what options.

Out of the box ``io.containerd.runc.v2`` is served by our ``containerd-shim-pyrunc-v2``; point
it at Debian's Go shim with::

    [plugins."io.containerd.runtime.v2.task".runtimes."io.containerd.runc.v2"]
      path = "/usr/bin/containerd-shim-runc-v2"

``options`` are runc options (``BinaryName``, ``Root``, ``SystemdCgroup``...) given to tasks that
bring none of their own; ``BinaryName`` selects another OCI runtime (crun, runsc).

``protocol`` asks the shim to serve its Task API over ``"ttrpc"`` (the default) or ``"grpc"``
(containerd 2.x's bootstrap protocol). The daemon passes it in the shim's environment
(``PYCONTAINERD_SHIM_PROTOCOL``); ``containerd-shim-pyrunc-v2`` honours it, other shims ignore
it. Whatever the shim then prints in its bootstrap is what the daemon speaks::

    [plugins."io.containerd.runtime.v2.task".runtimes."io.containerd.pygrpc.v2"]
      path = "containerd-shim-pyrunc-v2"
      protocol = "grpc"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf import any_pb2

from pycontainerd.api.containerd.types.runc.options import oci_pb2
from pycontainerd.errdefs import InvalidArgument

RUNC_OPTIONS_TYPE = "containerd.runc.v1.Options"
PYRUNC_SHIM = "containerd-shim-pyrunc-v2"

# Accepted option keys, in containerd's config spelling, and the Options field they set.
_OPTION_FIELDS = {
    "BinaryName": "binary_name",
    "Root": "root",
    "SystemdCgroup": "systemd_cgroup",
    "NoPivotRoot": "no_pivot_root",
    "NoNewKeyring": "no_new_keyring",
    "ShimCgroup": "shim_cgroup",
    "IoUid": "io_uid",
    "IoGid": "io_gid",
    "CriuImagePath": "criu_image_path",
    "CriuWorkPath": "criu_work_path",
}


SHIM_PROTOCOLS = ("ttrpc", "grpc")


@dataclass(slots=True)
class RuntimeEntry:
    """One runtime name's shim, default options and the protocol to ask the shim for."""

    path: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    protocol: str = "ttrpc"

    def validate(self, name: str) -> None:
        """Fail (InvalidArgument, naming the key) on an unknown option or protocol."""
        self.runc_options(name)
        if self.protocol not in SHIM_PROTOCOLS:
            raise InvalidArgument(
                f'plugins."io.containerd.runtime.v2.task".runtimes."{name}".protocol: unknown protocol '
                f"{self.protocol!r} (known: {', '.join(SHIM_PROTOCOLS)})"
            )

    def runc_options(self, name: str) -> bytes | None:
        """The options as a serialized ``Any`` (containerd.runc.v1.Options), or None if empty."""
        if not self.options:
            return None
        opts = oci_pb2.Options()
        for key, value in self.options.items():
            attr = _OPTION_FIELDS.get(key)
            if attr is None:
                raise InvalidArgument(
                    f'plugins."io.containerd.runtime.v2.task".runtimes."{name}".options: unknown option {key!r} '
                    f"(known: {', '.join(sorted(_OPTION_FIELDS))})"
                )
            setattr(opts, attr, value)
        return any_pb2.Any(type_url=RUNC_OPTIONS_TYPE, value=opts.SerializeToString()).SerializeToString()


def with_runc_root(options: bytes | None, root: str) -> bytes | None:
    """Runtime options with runc's state ``Root`` defaulted to ``root``.

    Applies to runc options only (``containerd.runc.v1.Options``, or none at all); options of
    other runtimes are returned unchanged.
    """
    packed = any_pb2.Any()
    if options:
        packed.ParseFromString(options)
        if not packed.type_url.endswith(RUNC_OPTIONS_TYPE):
            return options
    opts = oci_pb2.Options.FromString(packed.value) if options else oci_pb2.Options()
    if opts.root:
        return options
    opts.root = root
    return any_pb2.Any(
        type_url=packed.type_url or RUNC_OPTIONS_TYPE, value=opts.SerializeToString()
    ).SerializeToString()


def _default_runtimes() -> dict[str, RuntimeEntry]:
    return {"io.containerd.runc.v2": RuntimeEntry(path=PYRUNC_SHIM)}


@dataclass(slots=True)
class TaskConfig:
    """The task plugin's config."""

    runtimes: dict[str, RuntimeEntry] = field(default_factory=_default_runtimes)
