"""Cgroup resources, cgroup paths and OOM score adjustments.

A CRI value of 0 means "not set" for every numeric resource, so zeros never reach the spec
(containerd's rule); a memory limit without a swap limit sets swap to the same value, so the
container cannot swap, where the host can limit swap at all.
"""

from __future__ import annotations

import copy
import logging
import posixpath
from typing import TYPE_CHECKING, Any

from pycontainerd.cri.spec.tidy import tidy
from pycontainerd.errdefs import FailedPrecondition

if TYPE_CHECKING:
    from pycontainerd.cri.spec.options import SpecOptions

log = logging.getLogger(__name__)

SANDBOX_CPU_SHARES = 2
"""CPU shares of a pause container: it needs next to nothing."""

SANDBOX_OOM_SCORE_ADJ = -998
"""OOM score adjustment of a pause container: killed almost never (kubernetes#47938)."""

SYSTEMD_CGROUP_PREFIX = "cri-containerd"


def cgroups_path(cgroup_parent: str, container_id: str, *, systemd: bool = False) -> str:
    """The ``linux.cgroupsPath`` of a container (or pause container) below ``cgroup_parent``.

    A parent whose last element ends in ``.slice`` gets runc's systemd form
    ``<slice>:cri-containerd:<id>``; any other parent the cgroupfs form ``<parent>/<id>``.
    Without a parent the systemd driver gets ``:cri-containerd:<id>`` (runc's default slice)
    and cgroupfs "" (the caller keeps its default path).
    """
    if not cgroup_parent:
        return f":{SYSTEMD_CGROUP_PREFIX}:{container_id}" if systemd else ""
    base = posixpath.basename(cgroup_parent)
    if base.endswith(".slice"):
        return f"{base}:{SYSTEMD_CGROUP_PREFIX}:{container_id}"
    return posixpath.normpath(posixpath.join(cgroup_parent, container_id))


def set_cgroups_path(spec: dict[str, Any], cgroup_parent: str, container_id: str, options: SpecOptions) -> None:
    """Set ``linux.cgroupsPath`` as containerd does (no change without a parent, unless systemd)."""
    path = cgroups_path(cgroup_parent, container_id, systemd=options.systemd_cgroup)
    if path:
        spec["linux"]["cgroupsPath"] = path


def restrict_oom_score_adj(preferred: int, current: int) -> int:
    """The daemon's own score when ``preferred`` is lower: a container may not be safer than its runtime."""
    return max(preferred, current)


def set_oom_score_adj(spec: dict[str, Any], adj: int, options: SpecOptions) -> None:
    """Set ``process.oomScoreAdj``, clamped with ``restrict_oom_score_adj``."""
    if options.restrict_oom_score_adj:
        adj = restrict_oom_score_adj(adj, options.current_oom_score_adj)
    spec["process"]["oomScoreAdj"] = adj


def apply_resources(spec: dict[str, Any], resources: Any, options: SpecOptions) -> None:
    """Merge a CRI ``LinuxContainerResources`` into ``linux.resources``.

    Raises:
        FailedPrecondition: hugepage limits asked for, the hugetlb controller missing, and
            ``tolerate_missing_hugetlb_controller`` off.
    """
    res = spec["linux"].setdefault("resources", {})
    cpu = res.setdefault("cpu", {})
    memory = res.setdefault("memory", {})
    for key, value in (
        ("period", resources.cpu_period),
        ("quota", resources.cpu_quota),
        ("shares", resources.cpu_shares),
    ):
        if value:
            # Period and shares are unsigned in the OCI spec; a negative CRI value wraps as in Go.
            cpu[key] = int(value) if key == "quota" else int(value) % 2**64
    if resources.cpuset_cpus:
        cpu["cpus"] = str(resources.cpuset_cpus)
    if resources.cpuset_mems:
        cpu["mems"] = str(resources.cpuset_mems)
    limit, swap = int(resources.memory_limit_in_bytes), int(resources.memory_swap_limit_in_bytes)
    if limit:
        memory["limit"] = limit
        if not swap and options.swap_controller:
            memory["swap"] = limit
    if swap and options.swap_controller:
        memory["swap"] = swap
    if resources.hugepage_limits and not options.disable_hugetlb_controller:
        if options.hugetlb_controller:
            pages = res.setdefault("hugepageLimits", [])
            pages += [{"pageSize": str(h.page_size), "limit": int(h.limit)} for h in resources.hugepage_limits]
        elif not options.tolerate_missing_hugetlb_controller:
            raise FailedPrecondition(
                "huge pages limits are specified but hugetlb cgroup controller is missing. "
                "Please set tolerate_missing_hugetlb_controller to `true` to ignore this error"
            )
        else:
            log.warning("hugetlb cgroup controller is absent. skipping huge pages limits")
    if resources.unified:
        res.setdefault("unified", {}).update({str(k): str(v) for k, v in resources.unified.items()})


def update_resources(spec: dict[str, Any], resources: Any, options: SpecOptions) -> dict[str, Any]:
    """A copy of a container's spec with new resources (UpdateContainerResources).

    Args:
        spec: the container's current spec; left unchanged.
        resources: the request's ``LinuxContainerResources``.
        options: the plugin knobs (hugetlb and swap facts matter here).

    Returns:
        The updated copy, to store and hand to the task's update.
    """
    updated = copy.deepcopy(spec)
    updated.setdefault("linux", {})
    apply_resources(updated, resources, options)
    return tidy(updated)


def container_resources(spec: dict[str, Any]) -> dict[str, Any]:
    """The ``linux.resources`` object of a spec, as a task update carries it."""
    resources: dict[str, Any] = spec.get("linux", {}).get("resources", {})
    return resources
