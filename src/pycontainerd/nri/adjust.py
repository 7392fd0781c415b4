"""Building a plugin's answer to CreateContainer: :class:`Adjustment`.

An :class:`Adjustment` wraps the ``ContainerAdjustment`` message plus the updates and
evictions of *other* containers a plugin may request in the same answer. Removals use
NRI's ``-`` prefix convention under the hood (``remove_env("X")`` sends the key ``-X``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .api import mark_for_removal, pb
from .builders import hook, linux_resources, mount

if TYPE_CHECKING:
    from collections.abc import Iterable

HOOK_STAGES = ("prestart", "create_runtime", "create_container", "start_container", "poststart", "poststop")


def container_update(
    container_id: str, resources: pb.LinuxResources | None = None, *, ignore_failure: bool = False, **kwargs: Any
) -> pb.ContainerUpdate:
    """A ``ContainerUpdate`` of another container's resources.

    Args:
        container_id: The container to update.
        resources: The resources to set; or give :func:`~.builders.linux_resources` keywords.
        ignore_failure: Whether a failure to apply it may be ignored.
        **kwargs: Passed to :func:`~.builders.linux_resources` when ``resources`` is None.
    """
    update = pb.ContainerUpdate(container_id=container_id, ignore_failure=ignore_failure)
    update.linux.resources.CopyFrom(resources if resources is not None else linux_resources(**kwargs))
    return update


class Adjustment:
    """A plugin's requested changes to a container being created.

    Attributes:
        message: The ``ContainerAdjustment`` being built.
        updates: Updates to other, existing containers.
        evictions: Containers the plugin wants stopped.
    """

    def __init__(self) -> None:
        self.message = pb.ContainerAdjustment()
        self.updates: list[pb.ContainerUpdate] = []
        self.evictions: list[pb.ContainerEviction] = []

    def set_annotation(self, key: str, value: str) -> Adjustment:
        """Add or replace an annotation."""
        self.message.annotations[key] = value
        return self

    def remove_annotation(self, key: str) -> Adjustment:
        """Remove an annotation."""
        self.message.annotations[mark_for_removal(key)] = ""
        return self

    def add_env(self, key: str, value: str) -> Adjustment:
        """Set an environment variable (replacing an existing value in place)."""
        self.message.env.add(key=key, value=value)
        return self

    def remove_env(self, key: str) -> Adjustment:
        """Remove an environment variable."""
        self.message.env.add(key=mark_for_removal(key))
        return self

    def add_mount(
        self, destination: str, source: str, type: str = "bind", options: Iterable[str] = ("rbind", "ro")
    ) -> Adjustment:
        """Add a mount (replacing any mount at the same destination)."""
        self.message.mounts.append(mount(destination, source, type, options))
        return self

    def remove_mount(self, destination: str) -> Adjustment:
        """Remove the mount at ``destination``."""
        self.message.mounts.add(destination=mark_for_removal(destination))
        return self

    def add_hook(
        self,
        stage: str,
        path: str,
        args: Iterable[str] = (),
        env: Iterable[str] = (),
        timeout: int | None = None,
    ) -> Adjustment:
        """Append an OCI hook.

        Args:
            stage: One of :data:`HOOK_STAGES` (``prestart``, ``create_runtime``, ...).
            path: The hook binary.
            args: Its argv (argv[0] included, as OCI wants).
            env: Its environment.
            timeout: Seconds, if limited.

        Raises:
            ValueError: For an unknown stage.
        """
        if stage not in HOOK_STAGES:
            raise ValueError(f"unknown hook stage {stage!r}, expected one of {', '.join(HOOK_STAGES)}")
        getattr(self.message.hooks, stage).append(hook(path, args, env, timeout))
        return self

    def set_args(self, args: Iterable[str], *, replace_others: bool = False) -> Adjustment:
        """Replace the process arguments (``replace_others`` overrides earlier plugins' args)."""
        del self.message.args[:]
        if replace_others:
            self.message.args.append("")
        self.message.args.extend(args)
        return self

    def add_device(
        self,
        path: str,
        type: str,
        major: int,
        minor: int,
        *,
        file_mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
    ) -> Adjustment:
        """Add a device node (and allow it in the devices cgroup)."""
        dev = self.message.linux.devices.add(path=path, type=type, major=major, minor=minor)
        if file_mode is not None:
            dev.file_mode.value = file_mode
        if uid is not None:
            dev.uid.value = uid
        if gid is not None:
            dev.gid.value = gid
        return self

    def remove_device(self, path: str) -> Adjustment:
        """Remove a device node."""
        self.message.linux.devices.add(path=mark_for_removal(path))
        return self

    def add_cdi_device(self, name: str) -> Adjustment:
        """Inject a CDI device by its qualified name (``vendor.com/class=name``)."""
        self.message.CDI_devices.add(name=name)
        return self

    def add_rlimit(self, type: str, hard: int, soft: int) -> Adjustment:
        """Add a POSIX rlimit (``RLIMIT_NOFILE``...)."""
        self.message.rlimits.add(type=type, hard=hard, soft=soft)
        return self

    def set_resources(self, resources: pb.LinuxResources | None = None, **kwargs: Any) -> Adjustment:
        """Merge resource settings in: a message, or :func:`~.builders.linux_resources` keywords."""
        self.message.linux.resources.MergeFrom(resources if resources is not None else linux_resources(**kwargs))
        return self

    def set_oom_score_adj(self, value: int) -> Adjustment:
        """Set the OOM score adjustment."""
        self.message.linux.oom_score_adj.value = value
        return self

    def set_cgroups_path(self, path: str) -> Adjustment:
        """Move the container to another cgroup."""
        self.message.linux.cgroups_path = path
        return self

    def set_sysctl(self, key: str, value: str) -> Adjustment:
        """Set a namespaced sysctl."""
        self.message.linux.sysctl[key] = value
        return self

    def update(self, container_id: str, *, ignore_failure: bool = False, **kwargs: Any) -> Adjustment:
        """Also update another container's resources (:func:`container_update` keywords)."""
        self.updates.append(container_update(container_id, ignore_failure=ignore_failure, **kwargs))
        return self

    def evict(self, container_id: str, reason: str) -> Adjustment:
        """Ask the runtime to stop another container."""
        self.evictions.append(pb.ContainerEviction(container_id=container_id, reason=reason))
        return self

    def response(self) -> pb.CreateContainerResponse:
        """The ``CreateContainerResponse`` carrying all of it."""
        return pb.CreateContainerResponse(adjust=self.message, update=self.updates, evict=self.evictions)
