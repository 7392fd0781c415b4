"""Merging the container *updates* plugins request, and resource ownership.

Used for the updates that come with CreateContainer, UpdateContainer and StopContainer
answers: requests for the same container from several plugins are folded into one
``ContainerUpdate``; two plugins setting the same resource of one container conflict. An
update marked ``ignore_failure`` that conflicts is dropped instead of failing the request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .api import pb
from .errors import NRIError
from .owners import (
    F_BLOCKIO_CLASS,
    F_CGROUPS_UNIFIED,
    F_CPU_PERIOD,
    F_CPU_QUOTA,
    F_CPU_REALTIME_PERIOD,
    F_CPU_REALTIME_RUNTIME,
    F_CPU_SHARES,
    F_CPUSET_CPUS,
    F_CPUSET_MEMS,
    F_HUGEPAGE_LIMITS,
    F_MEM_DISABLE_OOM_KILLER,
    F_MEM_KERNEL,
    F_MEM_KERNEL_TCP,
    F_MEM_LIMIT,
    F_MEM_RESERVATION,
    F_MEM_SWAP,
    F_MEM_SWAPPINESS,
    F_MEM_USE_HIERARCHY,
    F_PIDS_LIMIT,
    F_RDT_CLASS,
    Owners,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .result import CreateResult

_MEMORY_FIELDS = (
    ("limit", F_MEM_LIMIT),
    ("reservation", F_MEM_RESERVATION),
    ("swap", F_MEM_SWAP),
    ("kernel", F_MEM_KERNEL),
    ("kernel_tcp", F_MEM_KERNEL_TCP),
    ("swappiness", F_MEM_SWAPPINESS),
    ("disable_oom_killer", F_MEM_DISABLE_OOM_KILLER),
    ("use_hierarchy", F_MEM_USE_HIERARCHY),
)
_CPU_FIELDS = (
    ("shares", F_CPU_SHARES),
    ("quota", F_CPU_QUOTA),
    ("period", F_CPU_PERIOD),
    ("realtime_runtime", F_CPU_REALTIME_RUNTIME),
    ("realtime_period", F_CPU_REALTIME_PERIOD),
)


class UpdateError(NRIError):
    """A plugin asked for something the runtime cannot do (e.g. update a container being created)."""


def claim_resources(owners: Owners, cid: str, plugin: str, src: pb.LinuxResources, *targets: pb.LinuxResources) -> None:
    """Claim and copy every field ``src`` sets into each of ``targets``."""
    for name, field in _MEMORY_FIELDS:
        if src.memory.HasField(name):
            owners.claim(cid, field, plugin)
            for t in targets:
                getattr(t.memory, name).CopyFrom(getattr(src.memory, name))
    for name, field in _CPU_FIELDS:
        if src.cpu.HasField(name):
            owners.claim(cid, field, plugin)
            for t in targets:
                getattr(t.cpu, name).CopyFrom(getattr(src.cpu, name))
    for name, field in (("cpus", F_CPUSET_CPUS), ("mems", F_CPUSET_MEMS)):
        if value := getattr(src.cpu, name):
            owners.claim(cid, field, plugin)
            for t in targets:
                setattr(t.cpu, name, value)
    for limit in src.hugepage_limits:
        owners.claim_entry(cid, F_HUGEPAGE_LIMITS, limit.page_size, plugin)
        for t in targets:
            t.hugepage_limits.append(limit)
    for key, value in src.unified.items():
        owners.claim_entry(cid, F_CGROUPS_UNIFIED, key, plugin)
        for t in targets:
            t.unified[key] = value
    for name, field in (("blockio_class", F_BLOCKIO_CLASS), ("rdt_class", F_RDT_CLASS)):
        if src.HasField(name):
            owners.claim(cid, field, plugin)
            for t in targets:
                getattr(t, name).CopyFrom(getattr(src, name))
    if src.HasField("pids"):
        owners.claim(cid, F_PIDS_LIMIT, plugin)
        for t in targets:
            t.pids.limit = src.pids.limit
    for rule in src.devices:  # devices cgroup rules are not owned by anyone, as in Go
        for t in targets:
            t.devices.append(rule)


class UpdateResult:
    """Collects the container updates plugins request on UpdateContainer or StopContainer.

    Args:
        request: The UpdateContainer request (its resources get each plugin's changes to
            the container being updated), or None for StopContainer.
    """

    def __init__(self, request: pb.UpdateContainerRequest | None = None) -> None:
        self.request = request
        self.updates: dict[str, pb.ContainerUpdate] = {}
        self.update_order: list[str] = []
        self.evictions: list[pb.ContainerEviction] = []
        self.owners = Owners()

    def apply(
        self,
        updates: Iterable[pb.ContainerUpdate],
        plugin: str,
        evictions: Iterable[pb.ContainerEviction] = (),
    ) -> None:
        """Fold one plugin's requested updates in.

        Raises:
            ConflictError: If two plugins update the same resource of a container.
        """
        merge_updates(self, updates, plugin, creating=None)
        self.evictions.extend(evictions)

    def response_updates(self) -> list[pb.ContainerUpdate]:
        """Updates of other containers first, then the (possibly adjusted) updated container."""
        target = self.request.container.id if self.request is not None else None
        out = [self.updates[i] for i in self.update_order if i != target]
        if self.request is not None and target is not None:
            resources = self.updates[target].linux.resources if target in self.updates else None
            final = pb.ContainerUpdate(container_id=target)
            final.linux.resources.CopyFrom(resources or self.request.linux_resources)
            out.append(final)
        return out


def merge_updates(
    result: CreateResult | UpdateResult, updates: Iterable[pb.ContainerUpdate], plugin: str, creating: str | None
) -> None:
    """Fold requested container updates into ``result.updates`` with ownership checks.

    Raises:
        UpdateError: For an update of the container being created.
        ConflictError: For a resource another plugin already updated.
    """
    request = result.request if isinstance(result, UpdateResult) else None
    for u in updates:
        cid = u.container_id
        if creating is not None and cid == creating:
            raise UpdateError(f'plugin "{plugin}" asked update of "{cid}" during creation')
        merged = result.updates.get(cid)
        if merged is None:
            merged = pb.ContainerUpdate(container_id=cid, ignore_failure=u.ignore_failure)
            if request is not None and request.container.id == cid:
                merged.linux.resources.CopyFrom(request.linux_resources)
            result.updates[cid] = merged
            result.update_order.append(cid)
        else:
            merged.ignore_failure = merged.ignore_failure and u.ignore_failure
        if not u.HasField("linux") or not u.linux.HasField("resources"):
            continue
        # Work on a copy so an ignored failure leaves nothing half applied.
        resources = pb.LinuxResources()
        resources.CopyFrom(merged.linux.resources)
        try:
            claim_resources(result.owners, cid, plugin, u.linux.resources, resources)
        except Exception:
            if u.ignore_failure:
                continue
            raise
        merged.linux.resources.CopyFrom(resources)
        if request is not None and request.container.id == cid:
            request.linux_resources.CopyFrom(resources)
