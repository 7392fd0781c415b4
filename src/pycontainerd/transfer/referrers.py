"""OCI 1.1 referrers: the signatures, SBOMs and other artifacts that name a manifest as subject.

Asked of hosts with the ``referrers`` capability with ``GET /v2/<name>/referrers/<digest>``
(an OCI index, optionally filtered by ``artifactType``); a registry without the API (404) is
asked for the fallback tag ``<alg>-<hex>`` instead, as the distribution spec describes.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from pycontainerd.core.images import Descriptor
from pycontainerd.errdefs import InvalidArgument, NotFound
from pycontainerd.images.manifest import OCI_INDEX
from pycontainerd.remotes.auth import repository_scope
from pycontainerd.remotes.hosts import Capability
from pycontainerd.remotes.transport import response_error

if TYPE_CHECKING:
    from pycontainerd.remotes.client import RegistryClient
    from pycontainerd.remotes.reference import Reference

log = logging.getLogger(__name__)

MAX_INDEX = 4 << 20
SUBJECT_ANNOTATION = "io.containerd.manifest.subject"


def _entries(document: Any, artifact_type: str) -> list[Descriptor]:
    if not isinstance(document, dict) or not isinstance(document.get("manifests", []), list):
        raise InvalidArgument("referrers response is not an OCI index")
    out = []
    for raw in document.get("manifests") or []:
        if artifact_type and raw.get("artifactType") != artifact_type:
            continue
        annotations = dict(raw.get("annotations") or {})
        if raw.get("artifactType"):
            annotations.setdefault("org.opencontainers.image.artifactType", raw["artifactType"])
        out.append(Descriptor(raw.get("mediaType", ""), raw["digest"], int(raw["size"]), annotations))
    return out


async def fetch_referrers(
    client: RegistryClient, ref: Reference, digest: str, artifact_type: str = ""
) -> list[Descriptor]:
    """The referrers of ``digest`` in ``ref``'s repository (empty when there are none)."""
    hosts = [h for h in client.hosts(ref.domain) if h.can(Capability.REFERRERS)]
    transport = client.transport
    scopes = [repository_scope(ref.path)]
    for i, host in enumerate(hosts):
        query = [("artifactType", artifact_type)] if artifact_type else []
        url = transport.url(host, f"{ref.path}/referrers/{digest}", registry=ref.domain, query=query)
        resp = await transport.request(
            host, "GET", url, scopes=scopes, headers={"Accept": OCI_INDEX}, last_host=i == len(hosts) - 1
        )
        try:
            if resp.status == 200:
                return _entries(json.loads(await resp.content.read(MAX_INDEX)), artifact_type)
            if resp.status != 404:
                raise await response_error(f"referrers of {digest} on {host.host}", resp)
        finally:
            resp.release()
        # No referrers API here: the fallback tag.
        tag = digest.replace(":", "-", 1)
        try:
            _, index = await client.resolve(ref.with_tag(tag))
        except NotFound:
            continue
        data = await client.fetcher(ref).read(index)
        return _entries(json.loads(data), artifact_type)
    return []
