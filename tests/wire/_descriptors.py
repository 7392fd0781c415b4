"""Compile .proto files into descriptor sets with grpcio-tools, never touching the default pool."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from google.protobuf import descriptor_pb2

if TYPE_CHECKING:
    from collections.abc import Sequence

REPO = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "proto"


def well_known_include() -> Path:
    import grpc_tools

    return Path(grpc_tools.__file__).parent / "_proto"


def googleapis_include() -> Path:
    import google.rpc.status_pb2 as status

    return Path(status.__file__).parents[2]


def compile_set(files: Sequence[str], includes: Sequence[Path], out: Path) -> descriptor_pb2.FileDescriptorSet:
    """Compile ``files`` (relative to the first include) into one FileDescriptorSet."""
    args = [sys.executable, "-m", "grpc_tools.protoc", *(f"-I{i}" for i in includes)]
    args += [f"--descriptor_set_out={out}", "--include_imports", *files]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False, cwd=includes[0])
    if result.returncode != 0:
        raise AssertionError(f"protoc failed:\n{result.stderr}")
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(out.read_bytes())
    return fds


def messages(fds: descriptor_pb2.FileDescriptorSet) -> dict[str, descriptor_pb2.DescriptorProto]:
    """Every message (nested ones included) by full name with a leading dot."""
    out: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(prefix: str, msgs: Sequence[descriptor_pb2.DescriptorProto]) -> None:
        for msg in msgs:
            name = f"{prefix}.{msg.name}"
            out[name] = msg
            walk(name, msg.nested_type)

    for file in fds.file:
        walk(f".{file.package}" if file.package else "", file.message_type)
    return out


def services(fds: descriptor_pb2.FileDescriptorSet) -> dict[str, descriptor_pb2.ServiceDescriptorProto]:
    """Every service by full name."""
    return {f"{f.package}.{s.name}": s for f in fds.file for s in f.service}


def enums(fds: descriptor_pb2.FileDescriptorSet) -> dict[str, descriptor_pb2.EnumDescriptorProto]:
    """Every enum (nested ones included) by full name with a leading dot."""
    out: dict[str, descriptor_pb2.EnumDescriptorProto] = {}

    def walk(prefix: str, msgs: Sequence[descriptor_pb2.DescriptorProto]) -> None:
        for msg in msgs:
            name = f"{prefix}.{msg.name}"
            for e in msg.enum_type:
                out[f"{name}.{e.name}"] = e
            walk(name, msg.nested_type)

    for file in fds.file:
        prefix = f".{file.package}" if file.package else ""
        for e in file.enum_type:
            out[f"{prefix}.{e.name}"] = e
        walk(prefix, file.message_type)
    return out
