"""Wasm modules that are layers of the container's image (``application/wasm``), and the cache.

An OCI wasm image carries its module as a layer of its own; unpackers leave such layers out of
the rootfs (containerd >= 1.6.25 and pycontainerd skip every layer that is not a filesystem
layer). So, as runwasi does, the shim asks the daemon: the container's record names its
image, the image its manifest, the manifest its layers; the module is read from the content
store over the daemon's gRPC API (``-address`` / ``GRPC_ADDRESS``).

This runs in the runner process of one container, never in the shim itself: grpc is not
fork-safe and the shim forks a runner per container, so the shim must not carry grpc's threads.

Modules read this way are kept in the cache directory by digest, next to compiled modules
(:func:`compiled_path`), so a second container of the same image reads and compiles nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import tempfile
from typing import TYPE_CHECKING

from pycontainerd.errdefs import NotFound

if TYPE_CHECKING:
    from pycontainerd.core.images import Descriptor

WASM_LAYER_TYPES = (
    "application/wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
)
TITLE = "org.opencontainers.image.title"
CACHE_ENV = "PYCONTAINERD_WASM_CACHE"
DEFAULT_CACHE = "/var/cache/pycontainerd/wasmtime"
CALL_TIMEOUT = 30.0
MAX_MESSAGE = 16 << 20


def cache_dir() -> str:
    """Where modules and compiled modules are kept (``$PYCONTAINERD_WASM_CACHE`` overrides)."""
    return os.environ.get(CACHE_ENV) or DEFAULT_CACHE


def write_atomically(path: str, data: bytes | bytearray) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (readers never see half)."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def module_path(digest: str) -> str:
    """The cache file of the module layer ``digest``."""
    return os.path.join(cache_dir(), "modules", digest.replace(":", "-") + ".wasm")


def compiled_path(module_digest: str, engine_key: str) -> str:
    """The cache file of a module compiled by an engine described by ``engine_key``."""
    key = hashlib.sha256(f"{module_digest}\0{engine_key}".encode()).hexdigest()
    return os.path.join(cache_dir(), "compiled", key + ".cwasm")


def pick_layer(layers: list[Descriptor], arg0: str) -> Descriptor | None:
    """The module layer to run: the one titled like ``arg0``'s file name, else the first."""
    modules = [layer for layer in layers if layer.media_type in WASM_LAYER_TYPES]
    name = posixpath.basename(arg0)
    for layer in modules:
        if name and layer.annotations.get(TITLE) == name:
            return layer
    return modules[0] if modules else None


def module_from_image(address: str, namespace: str, container_id: str, arg0: str) -> tuple[bytes, str]:
    """The module of the container's image as ``(bytes, digest)``; NotFound when the image has none.

    Blocking; opens (and closes) its own gRPC channel to ``address``.
    """
    import grpc

    from pycontainerd.api.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
    from pycontainerd.api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
    from pycontainerd.api.containerd.services.images.v1 import images_pb2, images_pb2_grpc
    from pycontainerd.core.images import Descriptor
    from pycontainerd.images.manifest import manifests
    from pycontainerd.namespaces import GRPC_NAMESPACE_HEADER

    target = address if address.startswith("unix:") else f"unix:{address}"
    metadata = ((GRPC_NAMESPACE_HEADER, namespace),)
    options = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]
    with grpc.insecure_channel(target, options=options) as channel:
        content = content_pb2_grpc.ContentStub(channel)

        def read(digest: str) -> bytes:
            request = content_pb2.ReadContentRequest(digest=digest)
            chunks = content.Read(request, metadata=metadata, timeout=CALL_TIMEOUT)
            return b"".join(chunk.data for chunk in chunks)

        try:
            container = (
                containers_pb2_grpc.ContainersStub(channel)
                .Get(containers_pb2.GetContainerRequest(id=container_id), metadata=metadata, timeout=CALL_TIMEOUT)
                .container
            )
            if not container.image:
                raise NotFound(f"container {container_id} has no image to take a wasm module from")
            image = (
                images_pb2_grpc.ImagesStub(channel)
                .Get(images_pb2.GetImageRequest(name=container.image), metadata=metadata, timeout=CALL_TIMEOUT)
                .image
            )
            desc = Descriptor(image.target.media_type, image.target.digest, image.target.size)
            layer = None
            for found in manifests(read, desc, all_platforms=True):
                layer = pick_layer(list(found.layers), arg0)
                if layer is not None:
                    break
            if layer is None:
                raise NotFound(f"image {container.image} has no wasm layer ({', '.join(WASM_LAYER_TYPES)})")
            cached = module_path(layer.digest)
            with contextlib.suppress(OSError), open(cached, "rb") as fh:
                data = fh.read()
                if "sha256:" + hashlib.sha256(data).hexdigest() == layer.digest:
                    return data, layer.digest
            data = read(layer.digest)
        except grpc.RpcError as exc:
            raise NotFound(f"reading the wasm layers of {container_id} from {address}: {exc}") from exc
    if "sha256:" + hashlib.sha256(data).hexdigest() != layer.digest:
        raise NotFound(f"wasm layer {layer.digest} does not match its digest")
    with contextlib.suppress(OSError):
        write_atomically(cached, data)
    return data, layer.digest
