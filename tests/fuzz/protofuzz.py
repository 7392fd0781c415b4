"""Random protobuf messages for any message type, filled from pools of values containerd gives
meaning to (identifiers valid and not, digests, references, filters, paths, type URLs, labels)
mixed with arbitrary ones; and the catalogue of gRPC methods the daemon serves."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

import pycontainerd.api

EMPTY_SHA = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
IDENTIFIERS = ["fuzz", "default", "k8s.io", "c1", "x-1.y_2", "a"]
BAD_IDENTIFIERS = ["", ".", "..", "../../etc", "a/b", "/abs", "a\nb", "a b", "-a", "a-", "x" * 77, "\x00", "ñ", "a..b"]
DIGESTS = [
    EMPTY_SHA,
    "sha256:" + "0" * 64,
    "sha256:abc",
    "sha256:" + "A" * 64,
    "sha512:" + "0" * 128,
    "md5:d41d8cd98f00b204e9800998ecf8427e",
    "sha256:../../../../etc/passwd",
    "sha256",
    ":",
]
REFERENCES = [
    "docker.io/library/busybox:latest",
    "busybox",
    "localhost:5000/x:y",
    "INVALID//x",
    "a@sha256:abc",
    "x" * 300,
]
FILTERS = [
    'labels."a"==b',
    "name~=(x+x+)+y",
    "name~=[",
    "id==",
    "labels.",
    '"unterminated',
    "a,b,,",
    "topic~=/tasks/",
    "labels.a!=b",
]
PATHS = ["/", "/etc/passwd", "../../x", "/proc/self/root", "/dev/null", "relative", "/tmp/../../etc", ""]
TYPE_URLS = [
    "types.containerd.io/opencontainers/runtime-spec/1/Spec",
    "containerd.events.TaskCreate",
    "containerd.runc.v1.Options",
    "type.googleapis.com/google.protobuf.Empty",
    "",
    "x",
]
OTHERS = ["io.containerd.runc.v2", "io.containerd.fuzz.v1", "overlayfs", "native", "linux/amd64", "podsandbox"]
LABEL_KEYS = [
    "k",
    "containerd.io/gc.root",
    "containerd.io/gc.ref.content.0",
    "containerd.io/gc.ref.snapshot.overlayfs",
    "k" * 5000,
]
SPEC_JSON = [
    b"{}",
    b"null",
    b"[]",
    b"{",
    json.dumps({"ociVersion": "1.1.0", "process": {"args": ["true"], "user": {"uid": 4294967296}}}).encode(),
    json.dumps(
        {"root": {"path": "../../../"}, "mounts": [{"destination": "/x", "source": "/", "type": "bind"}]}
    ).encode(),
]

POOL = IDENTIFIERS + BAD_IDENTIFIERS + DIGESTS + REFERENCES + FILTERS + PATHS + TYPE_URLS + OTHERS
STRINGS = st.one_of(
    st.sampled_from(POOL),
    st.sampled_from(POOL),
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30),
)
BYTES = st.one_of(st.sampled_from(SPEC_JSON), st.binary(max_size=64))

_INT_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}


def _int(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = [v for v in (0, 1, -1, lo, hi, 2**31 - 1, 2**32, -(2**31)) if lo <= v <= hi]
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    cpp = field.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        return BYTES if field.type == FieldDescriptor.TYPE_BYTES else STRINGS
    if cpp in _INT_RANGES:
        return _int(*_INT_RANGES[cpp])
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return st.booleans()
    if cpp in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
        return st.floats(width=32 if cpp == FieldDescriptor.CPPTYPE_FLOAT else 64)
    if cpp == FieldDescriptor.CPPTYPE_ENUM:
        values = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(values), _int(-(2**31), 2**31 - 1))
    raise AssertionError(f"unexpected field type {field.full_name}")


def _fill(draw: st.DrawFn, msg: Message, depth: int) -> None:
    name = msg.DESCRIPTOR.full_name
    if name == "google.protobuf.Any":
        msg.type_url = draw(st.one_of(st.sampled_from(TYPE_URLS), STRINGS))  # type: ignore[attr-defined]
        msg.value = draw(BYTES)  # type: ignore[attr-defined]
        return
    for field in msg.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        target = getattr(msg, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field, value_field = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            for _ in range(draw(st.integers(0, 2))):
                key = draw(st.one_of(st.sampled_from(LABEL_KEYS), _scalar(key_field)))
                if value_field.message_type is not None:
                    if depth < 3:
                        _fill(draw, target[key], depth + 1)
                else:
                    target[key] = draw(_scalar(value_field))
            continue
        if field.is_repeated:
            for _ in range(draw(st.integers(0, 3))):
                if field.message_type is not None:
                    if depth < 3:
                        _fill(draw, target.add(), depth + 1)
                else:
                    target.append(draw(_scalar(field)))
            continue
        if field.message_type is not None:
            if depth < 3:
                target.SetInParent()  # present on the wire even when left empty
                _fill(draw, target, depth + 1)
            continue
        setattr(msg, field.name, draw(_scalar(field)))


def messages(descriptor: Descriptor) -> st.SearchStrategy[Message]:
    """Random messages of ``descriptor``'s type."""
    cls = message_factory.GetMessageClass(descriptor)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        msg = cls()
        _fill(draw, msg, 0)
        return msg

    return build()


@dataclass(frozen=True)
class Method:
    """One gRPC method the daemon serves."""

    path: str  # /package.Service/Method
    descriptor: MethodDescriptor

    @property
    def streaming_request(self) -> bool:
        return bool(self.descriptor.client_streaming)

    @property
    def streaming_response(self) -> bool:
        return bool(self.descriptor.server_streaming)


SERVED_PACKAGES = ("containerd.services.", "runtime.v1.", "pycontainerd.services.")
NOT_SERVED = ("containerd.services.events.ttrpc.",)  # the ttrpc listener's, not gRPC's


def _pb2_modules() -> list[str]:
    root = Path(pycontainerd.api.__path__[0])
    return sorted(
        "pycontainerd.api." + ".".join(path.relative_to(root).with_suffix("").parts) for path in root.rglob("*_pb2.py")
    )


def catalogue() -> list[Method]:
    """Every method of every service the daemon registers on its gRPC socket."""
    found: dict[str, Method] = {}
    for name in _pb2_modules():
        module = importlib.import_module(name)
        for service in module.DESCRIPTOR.services_by_name.values():
            if not service.full_name.startswith(SERVED_PACKAGES) or service.full_name.startswith(NOT_SERVED):
                continue
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                found[path] = Method(path, method)
    return [found[k] for k in sorted(found)]
