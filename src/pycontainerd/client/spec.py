"""OCI runtime spec helpers for clients: a default Linux spec changed by small composable options.

containerd's Go client builds specs with ``oci.WithImageConfig(image)``, ``oci.WithProcessArgs(...)``
and friends; these are the same idea on the spec as a plain dict::

    config = await client.images.config(ref)
    spec = new_spec(client.namespace, "web1", with_image_config(config), with_env("MODE=demo"),
                    with_memory_limit(64 << 20), with_mount("/srv/data", "/data", readonly=True))

Each option is a function taking the spec and changing it in place; :func:`new_spec` starts from
:func:`pycontainerd.oci.spec.default_spec` (containerd's default Linux spec: namespaces, masked
paths, default mounts, capabilities) and applies the options in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pycontainerd.core.containers import AnyValue
from pycontainerd.oci import spec as oci

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from pycontainerd.client.images import ImageConfig

Spec = dict[str, Any]


def new_spec(namespace: str, container_id: str, *opts: Callable[[Spec], None]) -> Spec:
    """containerd's default spec for ``container_id`` with ``opts`` applied in order."""
    spec = oci.default_spec(namespace, container_id)
    for opt in opts:
        opt(spec)
    return spec


def spec_value(spec: Spec) -> AnyValue:
    """The spec as a container record's ``spec`` (the type URL and JSON ctr uses)."""
    return AnyValue(oci.SPEC_TYPE_URL, oci.encode(spec))


def with_image_config(image: ImageConfig) -> Callable[[Spec], None]:
    """The image's entrypoint and command, environment, working directory and user."""
    config = image.config

    def apply(spec: Spec) -> None:
        process = spec["process"]
        args = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
        if args:
            process["args"] = args
        if config.get("Env"):
            process["env"] = list(config["Env"])
        process["cwd"] = config.get("WorkingDir") or "/"
        user = str(config.get("User") or "")
        uid, _, gid = user.partition(":")
        if uid.isdigit():
            process["user"]["uid"] = int(uid)
            process["user"]["gid"] = int(gid) if gid.isdigit() else int(uid)

    return apply


def with_args(*args: str) -> Callable[[Spec], None]:
    """Run ``args`` instead of the image's command."""

    def apply(spec: Spec) -> None:
        spec["process"]["args"] = list(args)

    return apply


def with_env(*pairs: str) -> Callable[[Spec], None]:
    """Set ``KEY=VALUE`` variables (replacing a variable of the same name)."""

    def apply(spec: Spec) -> None:
        env: list[str] = spec["process"].setdefault("env", [])
        for pair in pairs:
            key = pair.split("=", 1)[0]
            env[:] = [e for e in env if e.split("=", 1)[0] != key]
            env.append(pair)

    return apply


def with_cwd(path: str) -> Callable[[Spec], None]:
    """The process's working directory."""

    def apply(spec: Spec) -> None:
        spec["process"]["cwd"] = path

    return apply


def with_hostname(name: str) -> Callable[[Spec], None]:
    """The container's hostname (its own UTS namespace is in the default spec)."""

    def apply(spec: Spec) -> None:
        spec["hostname"] = name

    return apply


def with_mount(
    source: str, destination: str, *, readonly: bool = False, options: Sequence[str] = ()
) -> Callable[[Spec], None]:
    """Bind-mount a host path into the container."""

    def apply(spec: Spec) -> None:
        opts = ["rbind", "ro" if readonly else "rw", *options]
        spec.setdefault("mounts", []).append(
            {"destination": destination, "type": "bind", "source": source, "options": opts}
        )

    return apply


def with_memory_limit(limit: int) -> Callable[[Spec], None]:
    """A memory limit in bytes."""

    def apply(spec: Spec) -> None:
        spec["linux"].setdefault("resources", {}).setdefault("memory", {})["limit"] = limit

    return apply


def with_host_network() -> Callable[[Spec], None]:
    """Share the host's network namespace (and its /etc/hosts and resolv.conf)."""

    def apply(spec: Spec) -> None:
        spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"] if ns["type"] != "network"]
        mounts = spec.setdefault("mounts", [])
        for path in ("/etc/hosts", "/etc/resolv.conf"):
            mounts.append({"destination": path, "type": "bind", "source": path, "options": ["rbind", "ro"]})

    return apply


def with_readonly_rootfs() -> Callable[[Spec], None]:
    """Mount the root filesystem read-only."""

    def apply(spec: Spec) -> None:
        spec["root"]["readonly"] = True

    return apply
