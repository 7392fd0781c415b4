"""Hypothesis strategies for image documents: OCI/Docker indexes, manifests and configs that are
valid, nearly valid (one field of the wrong type, a wrong digest or size, a missing key) or
arbitrary JSON, stored in an in-memory content store that the documents point into."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import strategies as st

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

MEDIA_TYPES = st.sampled_from(
    [
        OCI_INDEX,
        OCI_MANIFEST,
        DOCKER_LIST,
        DOCKER_MANIFEST,
        OCI_CONFIG,
        OCI_LAYER,
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/wasm",
        "",
        "text/plain",
    ]
)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["sha256:" + "0" * 64, "sha256:xyz", "md5:abc", "linux", "amd64", "arm64", "v8", "../../x"]),
)
JSON: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@st.composite
def platform_json(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        return draw(JSON)
    out = {
        "os": draw(st.one_of(st.sampled_from(["linux", "windows", "LINUX"]), JSON)),
        "architecture": draw(st.one_of(st.sampled_from(["amd64", "arm64", "x86_64", "arm"]), JSON)),
    }
    if draw(st.booleans()):
        out["variant"] = draw(st.one_of(st.sampled_from(["v8", "v7", ""]), JSON))
    return out


@st.composite
def descriptor_json(draw: st.DrawFn, known: list[dict[str, Any]]) -> Any:
    """A descriptor of a stored document (possibly damaged), or anything at all."""
    if not known or draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    desc = dict(draw(st.sampled_from(known)))
    damage = draw(st.sampled_from(["none", "none", "none", "field", "drop", "media", "platform"]))
    if damage == "field":
        desc[draw(st.sampled_from(["mediaType", "digest", "size", "annotations"]))] = draw(JSON)
    elif damage == "drop":
        desc.pop(draw(st.sampled_from(["mediaType", "digest", "size"])), None)
    elif damage == "media":
        desc["mediaType"] = draw(MEDIA_TYPES)
    elif damage == "platform":
        desc["platform"] = draw(platform_json())
    return desc


@st.composite
def document(draw: st.DrawFn, known: list[dict[str, Any]]) -> Any:
    kind = draw(st.sampled_from(["index", "manifest", "manifest", "config", "config", "json"]))
    if kind == "json":
        return draw(JSON)
    doc: dict[str, Any] = {"schemaVersion": draw(st.one_of(st.just(2), st.just(1), JSON))}
    if draw(st.booleans()):
        doc["mediaType"] = draw(st.one_of(MEDIA_TYPES, JSON))
    if kind == "index":
        doc["manifests"] = draw(st.one_of(st.lists(descriptor_json(known), max_size=4), JSON))
    elif kind == "manifest":
        doc["config"] = draw(descriptor_json(known))
        doc["layers"] = draw(st.one_of(st.lists(descriptor_json(known), max_size=3), JSON))
    else:
        doc = {
            "os": draw(st.one_of(st.just("linux"), JSON)),
            "architecture": draw(st.one_of(st.sampled_from(["amd64", "arm64"]), JSON)),
            "rootfs": draw(
                st.one_of(
                    st.fixed_dictionaries(
                        {
                            "type": st.just("layers"),
                            "diff_ids": st.lists(st.one_of(st.just(sha(b"")), JSON), max_size=3),
                        }
                    ),
                    JSON,
                )
            ),
        }
    # Sometimes a key is dropped, or one of an unrelated kind is added (ambiguous documents).
    if draw(st.integers(0, 4)) == 0 and doc:
        doc.pop(draw(st.sampled_from(sorted(doc))), None)
    if draw(st.integers(0, 4)) == 0:
        doc[draw(st.sampled_from(["manifests", "layers", "config"]))] = draw(JSON)
    return doc


@st.composite
def image_store(draw: st.DrawFn) -> tuple[dict[str, bytes], dict[str, Any]]:
    """(digest -> bytes, the target descriptor), documents pointing at earlier ones."""
    store: dict[str, bytes] = {}
    known: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.integers(0, 12)) == 0:
            data = draw(st.binary(max_size=40))  # not JSON at all
        else:
            data = json.dumps(draw(document(known))).encode()
        digest = sha(data)
        store[digest] = data
        desc: dict[str, Any] = {"mediaType": draw(MEDIA_TYPES), "digest": digest, "size": len(data)}
        if draw(st.booleans()):
            desc["platform"] = draw(platform_json())
        known.append(desc)
    target = draw(descriptor_json(known[-1:]))
    return store, target
