"""Glue between the CRI service and :mod:`pycontainerd.cri.spec`: the spec options of each runtime
handler (host facts probed once, config knobs from the plugin and the handler) and the three
builds the RPCs need (pause container, container, resource update)."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from pycontainerd.cri.spec import (
    ImageConfig,
    SandboxFiles,
    SpecOptions,
    container_spec,
    host_options,
    sandbox_spec,
    update_resources,
)
from pycontainerd.cri.userns import pinned_userns

if TYPE_CHECKING:
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
    from pycontainerd.cri import state
    from pycontainerd.cri.config import CRIConfig
    from pycontainerd.cri.images import ImageInfo
    from pycontainerd.cri.service import CRIService

log = logging.getLogger(__name__)


def spec_options(config: CRIConfig, handler_name: str) -> SpecOptions:
    """The spec options of one runtime handler."""
    handler = config.handler(handler_name)
    options = host_options(
        restrict_oom_score_adj=config.restrict_oom_score_adj,
        disable_proc_mount=config.disable_proc_mount,
        disable_cgroup=config.disable_cgroup,
        disable_apparmor=config.disable_apparmor,
        enable_selinux=config.enable_selinux,
        privileged_without_host_devices=handler.privileged_without_host_devices,
        privileged_without_host_devices_all_devices_allowed=handler.privileged_without_host_devices_all_devices_allowed,
        device_ownership_from_security_context=config.device_ownership_from_security_context,
        systemd_cgroup=handler.systemd_cgroup,
        tolerate_missing_hugetlb_controller=config.tolerate_missing_hugetlb_controller,
        disable_hugetlb_controller=config.disable_hugetlb_controller,
        enable_unprivileged_ports=config.enable_unprivileged_ports,
        enable_unprivileged_icmp=config.enable_unprivileged_icmp,
        unset_seccomp_profile=config.unset_seccomp_profile,
        ignore_image_defined_volumes=config.ignore_image_defined_volumes,
        recursive_read_only_mounts=handler.is_runc,
        pod_annotations=tuple(handler.pod_annotations),
        container_annotations=tuple(handler.container_annotations),
    )
    if not options.restrict_oom_score_adj and "CAP_SYS_RESOURCE" not in options.all_capabilities:
        # Lowering an OOM score adj below our own needs CAP_SYS_RESOURCE: without it every pod
        # would fail to start, so scores are restricted as restrict_oom_score_adj would.
        log.warning("no CAP_SYS_RESOURCE: OOM score adjustments are restricted to the daemon's own")
        options = dataclasses.replace(options, restrict_oom_score_adj=True)
    return options


def _options(svc: CRIService, handler: str) -> SpecOptions:
    key = svc.config.handler_name(handler)
    if key not in svc.spec_options:
        svc.spec_options[key] = spec_options(svc.config, handler)
    options: SpecOptions = svc.spec_options[key]
    return options


def _files(files: dict[str, str]) -> SandboxFiles:
    return SandboxFiles(
        hostname=files.get("hostname", ""),
        hosts=files.get("hosts", ""),
        resolv_conf=files.get("resolv_conf", ""),
        shm=files.get("shm", ""),
    )


def pod_files(svc: CRIService, pod: state.PodSandbox) -> dict[str, str]:
    """The pod's files that exist on the host, by role."""
    directory = svc.sandbox_dir(pod.id)
    out = {}
    for role, name in (("hostname", "hostname"), ("hosts", "hosts"), ("resolv_conf", "resolv.conf"), ("shm", "shm")):
        if (directory / name).exists():
            out[role] = str(directory / name)
    return out


def build_sandbox_spec(
    svc: CRIService, pod: state.PodSandbox, files: dict[str, str], pause_args: list[str]
) -> dict[str, Any]:
    """The pause container's spec."""
    return sandbox_spec(
        sandbox_id=pod.id,
        config=pod.config,
        image=ImageConfig(entrypoint=tuple(pause_args)),
        netns_path=pod.netns_path,
        userns_path=pinned_userns(pod.netns_path),
        files=_files(files),
        options=_options(svc, pod.runtime_handler),
        pause_args=pause_args,
        namespace=svc.ctx.namespace,
        sandbox_image=svc.config.sandbox_image,
    )


def build_container_spec(
    svc: CRIService,
    pod: state.PodSandbox,
    container_id: str,
    config: api.ContainerConfig,
    image: ImageInfo,
    passwd: str | None,
    group: str | None,
) -> tuple[dict[str, Any], tuple[int, int, tuple[int, ...]]]:
    """A container's spec, and the user it runs as (uid, gid, supplementary groups)."""

    def target_pid(container: str) -> int:
        from pycontainerd.errdefs import FailedPrecondition

        target = svc.container(container)
        if target.sandbox_id != pod.id or not target.status.pid:
            raise FailedPrecondition(f"target container {container} is not running in pod {pod.id}")
        return target.status.pid

    spec = container_spec(
        container_id=container_id,
        sandbox_id=pod.id,
        config=config,
        sandbox_config=pod.config,
        image=ImageConfig.from_json(image.config),
        image_ref=image.name,
        sandbox_pid=pod.pid,
        files=_files(pod_files(svc, pod)),
        passwd=passwd,
        group=group,
        options=_options(svc, pod.runtime_handler),
        namespace=svc.ctx.namespace,
        target_pid=target_pid,
    )
    user = spec.get("process", {}).get("user", {})
    groups = tuple(int(g) for g in user.get("additionalGids", []) or [])
    return spec, (int(user.get("uid", 0)), int(user.get("gid", 0)), groups)


def updated_spec(
    svc: CRIService, handler: str, spec: dict[str, Any], resources: api.LinuxContainerResources
) -> dict[str, Any]:
    """The spec with new cgroup limits (UpdateContainerResources)."""
    return update_resources(spec, resources, _options(svc, handler))
