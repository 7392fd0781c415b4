"""Merging the answers of several plugins into one result, with ownership checks.

Plugins are consulted one after the other. Each answer is folded into the collected
adjustment (or updates) *and* into the request itself, so the next plugin sees the
container as the earlier plugins left it. Every field a plugin sets is claimed in
:class:`~.owners.Owners`; two plugins setting the same thing fail the request with a
:class:`~.owners.ConflictError` naming both.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .api import clear_removal_marker, is_marked_for_removal, mark_for_removal, pb
from .owners import (
    F_ANNOTATIONS,
    F_ARGS,
    F_CDI_DEVICES,
    F_CGROUPS_PATH,
    F_DEVICES,
    F_ENV,
    F_IO_PRIORITY,
    F_LINUX_NET_DEVICES,
    F_LINUX_SCHED,
    F_MEMORY_POLICY,
    F_MOUNTS,
    F_NAMESPACE,
    F_OCI_HOOKS,
    F_OOM_SCORE_ADJ,
    F_RDT_CLOS_ID,
    F_RDT_ENABLE_MONITORING,
    F_RDT_SCHEMATA,
    F_RLIMITS,
    F_SECCOMP_POLICY,
    F_SYSCTL,
    Owners,
)
from .updates import claim_resources, merge_updates

_HOOK_STAGES = ("prestart", "create_runtime", "create_container", "start_container", "poststart", "poststop")


@dataclass(frozen=True, slots=True)
class CreateContainerResult:
    """The merged answer of all plugins to CreateContainer.

    Attributes:
        adjustment: Apply it to the container's OCI spec with :func:`~.spec.apply_adjustment`.
        updates: Resource updates the plugins want on *other* existing containers.
        evictions: Containers the plugins want stopped.
    """

    adjustment: pb.ContainerAdjustment
    updates: list[pb.ContainerUpdate] = dataclasses.field(default_factory=list)
    evictions: list[pb.ContainerEviction] = dataclasses.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class UpdateContainerResult:
    """The merged answer of all plugins to UpdateContainer.

    Attributes:
        resources: The resources to give the updated container (plugins may change them).
        updates: Resource updates of *other* containers.
        evictions: Containers the plugins want stopped.
    """

    resources: pb.LinuxResources
    updates: list[pb.ContainerUpdate] = dataclasses.field(default_factory=list)
    evictions: list[pb.ContainerEviction] = dataclasses.field(default_factory=list)


class CreateResult:
    """Collects the adjustments of every plugin for one CreateContainer request."""

    def __init__(self, request: pb.CreateContainerRequest) -> None:
        self.request = request
        self.adjust = pb.ContainerAdjustment()
        self.updates: dict[str, pb.ContainerUpdate] = {}
        self.update_order: list[str] = []
        self.evictions: list[pb.ContainerEviction] = []
        self.owners = Owners()

    @property
    def container_id(self) -> str:
        return str(self.request.container.id)

    def apply(self, reply: pb.CreateContainerResponse, plugin: str) -> None:
        """Fold one plugin's answer in.

        Raises:
            ConflictError: If ``plugin`` sets something another plugin already set.
            UpdateError: If ``plugin`` asks to update the container being created.
        """
        if reply.HasField("adjust"):
            self._adjust(reply.adjust, plugin)
        merge_updates(self, reply.update, plugin, creating=self.container_id)
        self.evictions.extend(reply.evict)

    def response(self) -> pb.CreateContainerResponse:
        """The merged answer."""
        return pb.CreateContainerResponse(
            adjust=self.adjust, update=[self.updates[i] for i in self.update_order], evict=self.evictions
        )

    def _adjust(self, adj: pb.ContainerAdjustment, plugin: str) -> None:
        cid, ctr, out, owners = self.container_id, self.request.container, self.adjust, self.owners
        # Annotations: "-key" removes; a removal plus a new value in one answer is a replace.
        removed = {is_marked_for_removal(k)[0] for k in adj.annotations if k.startswith("-")}
        for key, value in adj.annotations.items():
            if key.startswith("-"):
                continue
            if key in removed:
                owners.clear_entry(cid, F_ANNOTATIONS, key, plugin)
                ctr.annotations.pop(key, None)
                removed.discard(key)
            owners.claim_entry(cid, F_ANNOTATIONS, key, plugin)
            ctr.annotations[key] = value
            out.annotations[key] = value
        for key in removed:
            owners.clear_entry(cid, F_ANNOTATIONS, key, plugin)
            ctr.annotations.pop(key, None)
            out.annotations[mark_for_removal(key)] = ""
        self._adjust_mounts(adj, plugin)
        self._adjust_env(adj, plugin)
        if adj.args:
            args = list(adj.args)
            if args[0] == "":  # an empty first arg asks to drop the previous plugins' args
                owners.clear(cid, F_ARGS, plugin)
                args = args[1:]
            owners.claim(cid, F_ARGS, plugin)
            del out.args[:]
            out.args.extend(args)
            del ctr.args[:]
            ctr.args.extend(args)
        if adj.HasField("hooks"):
            touched = False
            for stage in _HOOK_STAGES:
                hooks = getattr(adj.hooks, stage)
                if hooks:
                    getattr(out.hooks, stage).extend(hooks)
                    getattr(ctr.hooks, stage).extend(hooks)
                    touched = True
            if touched:
                owners.accumulate(cid, F_OCI_HOOKS, plugin)
        if adj.HasField("linux"):
            self._adjust_linux(adj.linux, plugin)
        for rlimit in adj.rlimits:
            owners.claim_entry(cid, F_RLIMITS, rlimit.type, plugin)
            ctr.rlimits.append(rlimit)
            out.rlimits.append(rlimit)
        for cdi in adj.CDI_devices:
            owners.claim_entry(cid, F_CDI_DEVICES, cdi.name, plugin)
            out.CDI_devices.append(cdi)

    def _adjust_mounts(self, adj: pb.ContainerAdjustment, plugin: str) -> None:
        if not adj.mounts:
            return
        cid, ctr, out = self.container_id, self.request.container, self.adjust
        add = [m for m in adj.mounts if not m.destination.startswith("-")]
        delete = {clear_removal_marker(m.destination): m for m in adj.mounts if m.destination.startswith("-")}
        modified = {m.destination for m in add}
        kept = []
        for m in out.mounts:
            if m.destination in delete:
                self.owners.clear_entry(cid, F_MOUNTS, m.destination, plugin)
            else:
                kept.append(m)
        del out.mounts[:]
        out.mounts.extend(kept)
        kept = [m for m in ctr.mounts if m.destination not in delete and m.destination not in modified]
        del ctr.mounts[:]
        ctr.mounts.extend(kept)
        for m in add:
            self.owners.claim_entry(cid, F_MOUNTS, m.destination, plugin)
            out.mounts.append(m)
        for dest, m in delete.items():
            if dest not in modified:
                out.mounts.append(m)
        ctr.mounts.extend(add)

    def _adjust_env(self, adj: pb.ContainerAdjustment, plugin: str) -> None:
        if not adj.env:
            return
        cid, ctr, out = self.container_id, self.request.container, self.adjust
        add = [e for e in adj.env if not e.key.startswith("-")]
        delete = {clear_removal_marker(e.key) for e in adj.env if e.key.startswith("-")}
        modified = {e.key for e in add}
        kept = []
        for e in out.env:
            if e.key in delete:
                self.owners.clear_entry(cid, F_ENV, e.key, plugin)
            else:
                kept.append(e)
        del out.env[:]
        out.env.extend(kept)
        env = [e for e in ctr.env if e.partition("=")[0] not in delete | modified]
        del ctr.env[:]
        ctr.env.extend(env)
        for e in add:
            self.owners.claim_entry(cid, F_ENV, e.key, plugin)
            out.env.append(e)
            ctr.env.append(f"{e.key}={e.value}")
        # Removals of variables the plugin did not also set reach the spec as "-KEY".
        for key in sorted(delete - modified):
            out.env.append(pb.KeyValue(key=mark_for_removal(key)))

    def _adjust_linux(self, lin: pb.LinuxContainerAdjustment, plugin: str) -> None:
        cid, owners = self.container_id, self.owners
        ctr, out = self.request.container.linux, self.adjust.linux
        if lin.devices:
            delete = {clear_removal_marker(d.path) for d in lin.devices if d.path.startswith("-")}
            add = [d for d in lin.devices if not d.path.startswith("-")]
            modified = {d.path for d in add}
            kept = []
            for d in out.devices:
                if d.path in delete:
                    owners.clear_entry(cid, F_DEVICES, d.path, plugin)
                else:
                    kept.append(d)
            del out.devices[:]
            out.devices.extend(kept)
            kept = [d for d in ctr.devices if d.path not in delete and d.path not in modified]
            del ctr.devices[:]
            ctr.devices.extend(kept)
            for d in add:
                owners.claim_entry(cid, F_DEVICES, d.path, plugin)
                out.devices.append(d)
                ctr.devices.append(d)
        if lin.HasField("resources"):
            claim_resources(owners, cid, plugin, lin.resources, ctr.resources, out.resources)
        if lin.cgroups_path:
            owners.claim(cid, F_CGROUPS_PATH, plugin)
            ctr.cgroups_path = out.cgroups_path = lin.cgroups_path
        for name, field in (
            ("oom_score_adj", F_OOM_SCORE_ADJ),
            ("io_priority", F_IO_PRIORITY),
            ("seccomp_policy", F_SECCOMP_POLICY),
            ("scheduler", F_LINUX_SCHED),
        ):
            if lin.HasField(name):
                owners.claim(cid, field, plugin)
                getattr(ctr, name).CopyFrom(getattr(lin, name))
                getattr(out, name).CopyFrom(getattr(lin, name))
        if lin.HasField("memory_policy"):
            owners.claim(cid, F_MEMORY_POLICY, plugin)
            out.memory_policy.CopyFrom(lin.memory_policy)
        for ns in lin.namespaces:
            key, removed = is_marked_for_removal(ns.type)
            owners.claim_entry(cid, F_NAMESPACE, key, plugin)
            kept = [n for n in ctr.namespaces if n.type != key]
            del ctr.namespaces[:]
            ctr.namespaces.extend(kept)
            if not removed:
                ctr.namespaces.append(ns)
            out.namespaces.append(ns)
        self._adjust_keyed(lin.sysctl, ctr.sysctl, out.sysctl, F_SYSCTL, plugin, message=False)
        self._adjust_keyed(lin.net_devices, ctr.net_devices, out.net_devices, F_LINUX_NET_DEVICES, plugin, True)
        if lin.HasField("rdt"):
            rdt = lin.rdt
            if rdt.remove:
                for field in (F_RDT_CLOS_ID, F_RDT_SCHEMATA, F_RDT_ENABLE_MONITORING):
                    owners.clear(cid, field, plugin)
                out.rdt.CopyFrom(pb.LinuxRdt(remove=True))
            for name, field in (
                ("clos_id", F_RDT_CLOS_ID),
                ("schemata", F_RDT_SCHEMATA),
                ("enable_monitoring", F_RDT_ENABLE_MONITORING),
            ):
                if rdt.HasField(name):
                    owners.claim(cid, field, plugin)
                    getattr(out.rdt, name).CopyFrom(getattr(rdt, name))
                    out.rdt.remove = False

    def _adjust_keyed(self, src: Any, ctr: Any, out: Any, field: int, plugin: str, message: bool) -> None:
        """Maps with ``-key`` removals (sysctl, net devices)."""
        items = dict(src.items())
        removed = {k[1:] for k in items if k.startswith("-")}
        for key, value in items.items():
            if key.startswith("-"):
                continue
            if key in removed:
                self.owners.clear_entry(self.container_id, field, key, plugin)
                removed.discard(key)
            self.owners.claim_entry(self.container_id, field, key, plugin)
            for target in (ctr, out):
                if message:
                    target[key].CopyFrom(value)
                else:
                    target[key] = value
        for key in removed:
            self.owners.clear_entry(self.container_id, field, key, plugin)
            ctr.pop(key, None)
            if message:
                out[mark_for_removal(key)].CopyFrom(pb.LinuxNetDevice())
            else:
                out[mark_for_removal(key)] = ""
