"""The gRPC edge of the CRI: ``runtime.v1`` RuntimeService and ImageService, and the same
services under ``runtime.v1alpha2`` for kubelets older than 1.26.

v1alpha2 and v1 are wire-compatible (same messages, same field numbers), which is how
containerd 1.7 served both; so one handler table serves both package names, built from the
service descriptors. Errors are ``errdefs`` kinds, turned into status codes by the daemon's
interceptor.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri import containers, execs, images, sandboxes, stats, status
from pycontainerd.errdefs import Unimplemented

if TYPE_CHECKING:
    from pycontainerd.cri.service import CRIService

log = logging.getLogger(__name__)

V1 = "runtime.v1"
V1ALPHA2 = "runtime.v1alpha2"
PAGE = 100

Unary = Callable[[Any, Any], Awaitable[Any]]
Streaming = Callable[[Any, Any], AsyncIterator[Any]]


def _pages(items: list[Any], make: Callable[[list[Any]], Any]) -> AsyncIterator[Any]:
    async def gen() -> AsyncIterator[Any]:
        for start in range(0, len(items), PAGE):
            yield make(items[start : start + PAGE])

    return gen()


class CRIServicer:
    """Binds each RPC name to its implementation for one API version."""

    def __init__(self, svc: CRIService, api_version: str = "v1") -> None:
        self.svc = svc
        self.api_version = api_version

    def unary(self) -> dict[str, Unary]:
        """Unary RPC name -> coroutine function(request, context)."""
        svc = self.svc

        def bind(fn: Callable[[CRIService, Any], Awaitable[Any]]) -> Unary:
            async def call(request: Any, context: Any) -> Any:
                return await fn(svc, request)

            return call

        async def version(request: Any, context: Any) -> Any:
            return await status.version(svc, request, self.api_version)

        table: dict[str, Unary] = {
            "Version": version,
            "RunPodSandbox": bind(sandboxes.run_pod_sandbox),
            "StopPodSandbox": bind(sandboxes.stop_pod_sandbox),
            "RemovePodSandbox": bind(sandboxes.remove_pod_sandbox),
            "PodSandboxStatus": bind(sandboxes.pod_sandbox_status),
            "ListPodSandbox": bind(sandboxes.list_pod_sandbox),
            "CreateContainer": bind(containers.create_container),
            "StartContainer": bind(containers.start_container),
            "StopContainer": bind(containers.stop_container),
            "RemoveContainer": bind(containers.remove_container),
            "ListContainers": bind(containers.list_containers),
            "ContainerStatus": bind(containers.container_status),
            "UpdateContainerResources": bind(containers.update_container_resources),
            "ReopenContainerLog": bind(containers.reopen_container_log),
            "ExecSync": bind(execs.exec_sync),
            "Exec": bind(self._exec),
            "Attach": bind(self._attach),
            "PortForward": bind(self._port_forward),
            "ContainerStats": bind(stats.container_stats),
            "ListContainerStats": bind(stats.list_container_stats),
            "PodSandboxStats": bind(stats.pod_sandbox_stats),
            "ListPodSandboxStats": bind(stats.list_pod_sandbox_stats),
            "UpdateRuntimeConfig": bind(status.update_runtime_config),
            "Status": bind(status.status),
            "CheckpointContainer": bind(containers_checkpoint),
            "ListMetricDescriptors": bind(stats.list_metric_descriptors),
            "ListPodSandboxMetrics": bind(stats.list_pod_sandbox_metrics),
            "RuntimeConfig": bind(status.runtime_config),
            "UpdatePodSandboxResources": bind(update_pod_sandbox_resources),
            "ListImages": bind(images.list_images),
            "ImageStatus": bind(images.image_status),
            "PullImage": bind(images.pull_image),
            "RemoveImage": bind(images.remove_image),
            "ImageFsInfo": bind(images.image_fs_info),
        }
        return table

    def streaming(self) -> dict[str, Streaming]:
        """Server-streaming RPC name -> async generator function(request, context)."""
        svc = self.svc

        async def pods(request: Any, context: Any) -> AsyncIterator[Any]:
            listed = await sandboxes.list_pod_sandbox(svc, api.ListPodSandboxRequest(filter=request.filter))
            async for page in _pages(list(listed.items), lambda p: api.StreamPodSandboxesResponse(pod_sandboxes=p)):
                yield page

        async def ctrs(request: Any, context: Any) -> AsyncIterator[Any]:
            listed = await containers.list_containers(svc, api.ListContainersRequest(filter=request.filter))
            async for page in _pages(list(listed.containers), lambda p: api.StreamContainersResponse(containers=p)):
                yield page

        async def ctr_stats(request: Any, context: Any) -> AsyncIterator[Any]:
            listed = await stats.list_container_stats(svc, api.ListContainerStatsRequest(filter=request.filter))
            async for page in _pages(list(listed.stats), lambda p: api.StreamContainerStatsResponse(container_stats=p)):
                yield page

        async def pod_stats(request: Any, context: Any) -> AsyncIterator[Any]:
            listed = await stats.list_pod_sandbox_stats(svc, api.ListPodSandboxStatsRequest(filter=request.filter))
            async for page in _pages(
                list(listed.stats), lambda p: api.StreamPodSandboxStatsResponse(pod_sandbox_stats=p)
            ):
                yield page

        async def pod_metrics(request: Any, context: Any) -> AsyncIterator[Any]:
            listed = await stats.list_pod_sandbox_metrics(svc, api.ListPodSandboxMetricsRequest())
            async for page in _pages(
                list(listed.pod_metrics), lambda p: api.StreamPodSandboxMetricsResponse(pod_sandbox_metrics=p)
            ):
                yield page

        async def image_list(request: Any, context: Any) -> AsyncIterator[Any]:
            listed = await images.list_images(svc, api.ListImagesRequest(filter=request.filter))
            async for page in _pages(list(listed.images), lambda p: api.StreamImagesResponse(images=p)):
                yield page

        async def events(request: Any, context: Any) -> AsyncIterator[Any]:
            async for event in status.container_events(svc, request):
                yield event

        return {
            "StreamPodSandboxes": pods,
            "StreamContainers": ctrs,
            "StreamContainerStats": ctr_stats,
            "StreamPodSandboxStats": pod_stats,
            "StreamPodSandboxMetrics": pod_metrics,
            "StreamImages": image_list,
            "GetContainerEvents": events,
        }

    async def _exec(self, svc: CRIService, request: api.ExecRequest) -> api.ExecResponse:
        execs._running(svc, request.container_id)
        if not request.cmd:
            from pycontainerd.errdefs import InvalidArgument

            raise InvalidArgument("cmd must not be empty")
        if not (request.stdin or request.stdout or request.stderr):
            from pycontainerd.errdefs import InvalidArgument

            raise InvalidArgument("one of stdin, stdout, or stderr must be set")
        return api.ExecResponse(url=svc.streaming.exec_url(request))

    async def _attach(self, svc: CRIService, request: api.AttachRequest) -> api.AttachResponse:
        execs._running(svc, request.container_id)
        return api.AttachResponse(url=svc.streaming.attach_url(request))

    async def _port_forward(self, svc: CRIService, request: api.PortForwardRequest) -> api.PortForwardResponse:
        pod = svc.sandbox(request.pod_sandbox_id)
        if pod.state != api.SANDBOX_READY:
            from pycontainerd.errdefs import FailedPrecondition

            raise FailedPrecondition(f"sandbox {pod.id} is not running")
        return api.PortForwardResponse(url=svc.streaming.port_forward_url(request))


async def containers_checkpoint(svc: CRIService, request: api.CheckpointContainerRequest) -> Any:
    """CheckpointContainer (see :mod:`.checkpoint`)."""
    from pycontainerd.cri.checkpoint import checkpoint_container

    return await checkpoint_container(svc, request)


async def update_pod_sandbox_resources(
    svc: CRIService, request: api.UpdatePodSandboxResourcesRequest
) -> api.UpdatePodSandboxResourcesResponse:
    """kubelet owns the pod-level cgroup; as in containerd, the new figures go to NRI plugins
    (UpdatePodSandbox may fail the call; PostUpdatePodSandbox is a notification)."""
    pod = svc.sandbox(request.pod_sandbox_id)
    overhead = request.overhead if request.HasField("overhead") else None
    resources = request.resources if request.HasField("resources") else None
    await svc.nri.update_pod_sandbox(pod, overhead, resources)
    await svc.nri.post_update_pod_sandbox(pod)
    return api.UpdatePodSandboxResourcesResponse()


def _handlers(package: str, service: str, servicer: CRIServicer) -> grpc.GenericRpcHandler:
    descriptor = api.DESCRIPTOR.services_by_name[service]
    unary, streaming = servicer.unary(), servicer.streaming()
    table: dict[str, grpc.RpcMethodHandler] = {}
    for method in descriptor.methods:
        request_cls = getattr(api, method.input_type.name)
        response_cls = getattr(api, method.output_type.name)
        if method.name in streaming:
            table[method.name] = grpc.unary_stream_rpc_method_handler(
                streaming[method.name],
                request_deserializer=request_cls.FromString,
                response_serializer=response_cls.SerializeToString,
            )
        else:
            table[method.name] = grpc.unary_unary_rpc_method_handler(
                unary.get(method.name, _unimplemented(method.name)),
                request_deserializer=request_cls.FromString,
                response_serializer=response_cls.SerializeToString,
            )
    return grpc.method_handlers_generic_handler(f"{package}.{service}", table)


def _unimplemented(name: str) -> Unary:
    async def call(request: Any, context: Any) -> Any:
        raise Unimplemented(f"{name} is not implemented by pycontainerd's CRI")

    return call


def register(server: grpc.aio.Server, svc: CRIService, *, v1alpha2: bool) -> None:
    """Serve the CRI on ``server`` (v1, and v1alpha2 unless it is turned off)."""
    packages = [(V1, "v1")] + ([(V1ALPHA2, "v1alpha2")] if v1alpha2 else [])
    handlers = []
    for package, version in packages:
        servicer = CRIServicer(svc, version)
        handlers.append(_handlers(package, "RuntimeService", servicer))
        handlers.append(_handlers(package, "ImageService", servicer))
    server.add_generic_rpc_handlers(tuple(handlers))
