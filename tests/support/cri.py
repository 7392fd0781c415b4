"""A CRI client as kubelet uses it (runtime.v1 over the daemon's unix socket), plus pod and
container configs the tests build on."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2_grpc as api_grpc

TIMEOUT = 120.0


class CRIClient:
    """Synchronous stubs for RuntimeService and ImageService (``package`` picks v1 or v1alpha2)."""

    def __init__(self, address: str, package: str = "runtime.v1") -> None:
        self.channel = grpc.insecure_channel(f"unix://{address}")
        self.runtime = api_grpc.RuntimeServiceStub(self.channel)
        self.images = api_grpc.ImageServiceStub(self.channel)
        self.package = package

    def call(self, service: str, method: str, request: Any, response_cls: type) -> Any:
        """Call ``method`` of ``service`` under this client's package (for v1alpha2)."""
        rpc = self.channel.unary_unary(
            f"/{self.package}.{service}/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        return rpc(request, timeout=TIMEOUT)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    # Shorthands used by most tests.
    def run_pod(self, config: api.PodSandboxConfig, handler: str = "") -> str:
        """RunPodSandbox; the pod ID."""
        reply = self.runtime.RunPodSandbox(
            api.RunPodSandboxRequest(config=config, runtime_handler=handler), timeout=TIMEOUT
        )
        return str(reply.pod_sandbox_id)

    def create(self, pod_id: str, config: api.ContainerConfig, pod: api.PodSandboxConfig) -> str:
        """CreateContainer; the container ID."""
        reply = self.runtime.CreateContainer(
            api.CreateContainerRequest(pod_sandbox_id=pod_id, config=config, sandbox_config=pod), timeout=TIMEOUT
        )
        return str(reply.container_id)

    def start(self, container_id: str) -> None:
        """StartContainer."""
        self.runtime.StartContainer(api.StartContainerRequest(container_id=container_id), timeout=TIMEOUT)

    def exec_sync(self, container_id: str, *cmd: str, timeout: int = 0) -> api.ExecSyncResponse:
        """ExecSync."""
        return self.runtime.ExecSync(
            api.ExecSyncRequest(container_id=container_id, cmd=list(cmd), timeout=timeout), timeout=TIMEOUT
        )

    def container_status(self, container_id: str, verbose: bool = False) -> api.ContainerStatusResponse:
        """ContainerStatus."""
        return self.runtime.ContainerStatus(
            api.ContainerStatusRequest(container_id=container_id, verbose=verbose), timeout=TIMEOUT
        )

    def pod_status(self, pod_id: str, verbose: bool = False) -> api.PodSandboxStatusResponse:
        """PodSandboxStatus."""
        return self.runtime.PodSandboxStatus(
            api.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=verbose), timeout=TIMEOUT
        )

    def stop_pod(self, pod_id: str) -> None:
        """StopPodSandbox."""
        self.runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=TIMEOUT)

    def remove_pod(self, pod_id: str) -> None:
        """RemovePodSandbox."""
        self.runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=TIMEOUT)

    def pull(self, image: str, auth: api.AuthConfig | None = None) -> str:
        """PullImage; the image ID."""
        request = api.PullImageRequest(image=api.ImageSpec(image=image))
        if auth is not None:
            request.auth.CopyFrom(auth)
        return str(self.images.PullImage(request, timeout=TIMEOUT).image_ref)


@contextmanager
def cri_client(address: str, package: str = "runtime.v1") -> Iterator[CRIClient]:
    """A client closed afterwards."""
    client = CRIClient(address, package)
    try:
        yield client
    finally:
        client.close()


def pod_config(
    name: str = "",
    *,
    log_directory: str = "",
    port_mappings: list[tuple[int, int]] | None = None,
    hostname: str = "",
    host_network: bool = False,
    dns: api.DNSConfig | None = None,
) -> api.PodSandboxConfig:
    """A pod config as kubelet sends it."""
    name = name or f"pod-{secrets.token_hex(4)}"
    config = api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name=name, namespace="default", uid=secrets.token_hex(8), attempt=0),
        hostname="" if host_network else (hostname or name),  # kubelet sends none for host-network pods
        log_directory=log_directory,
        labels={"app": name},
        annotations={"test": "yes"},
    )
    for host_port, container_port in port_mappings or []:
        config.port_mappings.add(protocol=api.TCP, container_port=container_port, host_port=host_port)
    config.linux.cgroup_parent = ""
    if host_network:
        config.linux.security_context.namespace_options.network = api.NODE
    if dns is not None:
        config.dns_config.CopyFrom(dns)
    return config


def container_config(
    name: str,
    image: str,
    *cmd: str,
    log_path: str = "",
    env: dict[str, str] | None = None,
    stdin: bool = False,
    tty: bool = False,
) -> api.ContainerConfig:
    """A container config as kubelet sends it."""
    config = api.ContainerConfig(
        metadata=api.ContainerMetadata(name=name, attempt=0),
        image=api.ImageSpec(image=image),
        command=list(cmd),
        log_path=log_path,
        labels={"container": name},
        stdin=stdin,
        tty=tty,
    )
    for key, value in (env or {}).items():
        config.envs.add(key=key, value=value)
    return config
