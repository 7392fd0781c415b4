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
