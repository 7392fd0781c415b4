"""Registry client for the OCI distribution spec (containerd's ``core/remotes/docker``).

Layers, each depending only on those above it:

- ``reference``: parse and normalize image references (``busybox`` -> ``docker.io/library/busybox:latest``).
- ``hosts``: which endpoints serve a registry, from containerd's ``hosts.toml`` layout; SSL contexts.
- ``credentials``: credentials callbacks and docker's ``config.json``.
- ``auth``: ``WWW-Authenticate`` parsing, Basic auth and the bearer token flow, token cache.
- ``transport``: one request: TLS, authorization, plain-HTTP fallback, redirects, retries.
- ``fetcher`` / ``pusher``: blobs and manifests of one repository; downloads resume with ``Range``.
- ``client``: :class:`RegistryClient` ties them together and resolves references.

Typical pull::

    async with RegistryClient(config_path="/etc/containerd/certs.d",
                              credentials=docker_config_credentials()) as client:
        name, desc = await client.resolve("busybox")
        fetcher = client.fetcher(name)
        manifest = await fetcher.read(desc)
        await fetcher.fetch_into(writer, layer_desc, progress=report)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pycontainerd.remotes.auth import Challenge, parse_www_authenticate
    from pycontainerd.remotes.client import RegistryClient
    from pycontainerd.remotes.credentials import (
        Credentials,
        CredentialsFn,
        DockerConfig,
        docker_config_credentials,
        load_docker_config,
        static_credentials,
    )
    from pycontainerd.remotes.fetcher import Fetcher, IngestWriter
    from pycontainerd.remotes.hosts import Capability, RegistryHost, TLSSettings, configure_hosts
    from pycontainerd.remotes.limits import Limits, ProgressFn
    from pycontainerd.remotes.pusher import BlobSource, BytesSource, FileSource, Pusher, PushResult
    from pycontainerd.remotes.reference import Reference, parse_reference
    from pycontainerd.remotes.transport import RetryPolicy

# Submodules load on first use (PEP 562): importing the package stays cheap for callers that
# need one small part (the daemon's start-up imports this package without pulling, say, aiohttp).
_LAZY = {
    "Challenge": "pycontainerd.remotes.auth",
    "parse_www_authenticate": "pycontainerd.remotes.auth",
    "RegistryClient": "pycontainerd.remotes.client",
    "Credentials": "pycontainerd.remotes.credentials",
    "CredentialsFn": "pycontainerd.remotes.credentials",
    "DockerConfig": "pycontainerd.remotes.credentials",
    "docker_config_credentials": "pycontainerd.remotes.credentials",
    "load_docker_config": "pycontainerd.remotes.credentials",
    "static_credentials": "pycontainerd.remotes.credentials",
    "Fetcher": "pycontainerd.remotes.fetcher",
    "IngestWriter": "pycontainerd.remotes.fetcher",
    "Capability": "pycontainerd.remotes.hosts",
    "RegistryHost": "pycontainerd.remotes.hosts",
    "TLSSettings": "pycontainerd.remotes.hosts",
    "configure_hosts": "pycontainerd.remotes.hosts",
    "Limits": "pycontainerd.remotes.limits",
    "ProgressFn": "pycontainerd.remotes.limits",
    "BlobSource": "pycontainerd.remotes.pusher",
    "BytesSource": "pycontainerd.remotes.pusher",
    "FileSource": "pycontainerd.remotes.pusher",
    "Pusher": "pycontainerd.remotes.pusher",
    "PushResult": "pycontainerd.remotes.pusher",
    "Reference": "pycontainerd.remotes.reference",
    "parse_reference": "pycontainerd.remotes.reference",
    "RetryPolicy": "pycontainerd.remotes.transport",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BlobSource",
    "BytesSource",
    "Capability",
    "Challenge",
    "Credentials",
    "CredentialsFn",
    "DockerConfig",
    "Fetcher",
    "FileSource",
    "IngestWriter",
    "Limits",
    "ProgressFn",
    "PushResult",
    "Pusher",
    "Reference",
    "RegistryClient",
    "RegistryHost",
    "RetryPolicy",
    "TLSSettings",
    "configure_hosts",
    "docker_config_credentials",
    "load_docker_config",
    "parse_reference",
    "parse_www_authenticate",
    "static_credentials",
]
