"""Runtime-wide RPCs: Version, Status, RuntimeConfig, UpdateRuntimeConfig, GetContainerEvents."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.version import VERSION

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from pycontainerd.cri.service import CRIService

RUNTIME_NAME = "containerd"
CRI_API_VERSION = "v1"
KUBE_API_VERSION = "0.1.0"


async def version(
    svc: CRIService, request: api.VersionRequest, api_version: str = CRI_API_VERSION
) -> api.VersionResponse:
    """Names containerd as the runtime (kubelet and crictl print it), our release as its version."""
    return api.VersionResponse(
        version=KUBE_API_VERSION,
        runtime_name=RUNTIME_NAME,
        runtime_version=VERSION,
        runtime_api_version=api_version,
    )


async def status(svc: CRIService, request: api.StatusRequest) -> api.StatusResponse:
    """RuntimeReady, and NetworkReady as CNI reports it; the handlers and their features."""
    runtime_ready = api.RuntimeCondition(type="RuntimeReady", status=True)
    ready, reason, message = svc.network.status()
    network_ready = api.RuntimeCondition(type="NetworkReady", status=ready, reason=reason, message=message)
    response = api.StatusResponse(status=api.RuntimeStatus(conditions=[runtime_ready, network_ready]))
    for name in svc.config.containerd.runtimes:
        handler = response.runtime_handlers.add(name=name)
        handler.features.recursive_read_only_mounts = True
        handler.features.user_namespaces = True
    default = response.runtime_handlers.add(name="")
    default.features.recursive_read_only_mounts = True
    default.features.user_namespaces = True
    response.features.supplemental_groups_policy = True
    if request.verbose:
        response.info["config"] = json.dumps(
            {
                "sandboxImage": svc.config.sandbox_image,
                "defaultRuntimeName": svc.config.containerd.default_runtime_name,
                "snapshotter": svc.config.containerd.snapshotter,
                "cni": {"confDir": svc.config.cni.conf_dir, "binDirs": svc.config.cni.plugin_dirs},
                "registryConfigPath": svc.config.registry.config_path,
                "streamServerAddress": svc.config.stream_server_address,
            }
        )
        response.info["lastCNILoadStatus"] = "OK" if ready else message
    return response


async def runtime_config(svc: CRIService, request: api.RuntimeConfigRequest) -> api.RuntimeConfigResponse:
    """The cgroup driver kubelet must match: systemd when the default handler uses SystemdCgroup."""
    handler = svc.config.handler("")
    response = api.RuntimeConfigResponse()
    response.linux.cgroup_driver = api.SYSTEMD if handler.systemd_cgroup else api.CGROUPFS
    return response


async def update_runtime_config(
    svc: CRIService, request: api.UpdateRuntimeConfigRequest
) -> api.UpdateRuntimeConfigResponse:
    """kubelet's pod CIDR: written into a CNI config from ``conf_template`` when one is configured."""
    cidr = request.runtime_config.network_config.pod_cidr
    if cidr:
        await svc.network.update_pod_cidr(cidr)
    return api.UpdateRuntimeConfigResponse()


async def container_events(svc: CRIService, request: api.GetEventsRequest) -> AsyncIterator[api.ContainerEventResponse]:
    """Every container and pod event from now on, until the client goes away."""
    from pycontainerd.cri.containers import container_status_message
    from pycontainerd.cri.sandboxes import pod_status

    queue = svc.subscribe()
    try:
        while True:
            event = await queue.get()
            if event.container_id in svc.sandboxes and not event.HasField("pod_sandbox_status"):
                event.pod_sandbox_status.CopyFrom(pod_status(svc.sandboxes[event.container_id]))
            ctr = svc.containers.get(event.container_id)
            if ctr is not None:
                if ctr.sandbox_id in svc.sandboxes:
                    event.pod_sandbox_status.CopyFrom(pod_status(svc.sandboxes[ctr.sandbox_id]))
                event.containers_statuses.append(container_status_message(ctr))
            yield event
    finally:
        svc.unsubscribe(queue)
