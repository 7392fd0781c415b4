"""Our protos against Debian's containerd 1.6 protos: every shared message and field agrees.

containerd 2.x only adds to the 1.6 API, with one move: ``Envelope`` became
``containerd.types.Envelope`` (same fields, so the same bytes on the wire).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.wire._descriptors import (
    PROTO_DIR,
    compile_set,
    enums,
    googleapis_include,
    messages,
    services,
    well_known_include,
)

if TYPE_CHECKING:
    from google.protobuf import descriptor_pb2

pytestmark = pytest.mark.integration

DEBIAN_SRC = Path("/usr/share/gocode/src")
DEBIAN_CONTAINERD = DEBIAN_SRC / "github.com/containerd/containerd"
DEBIAN_FILES = [
    "runtime/v2/task/shim.proto",
    "runtime/v2/runc/options/oci.proto",
]

# Types that moved between 1.6 and 2.x without changing their fields.
MOVED = {
    ".containerd.services.events.v1.Envelope": ".containerd.types.Envelope",
    ".containerd.services.events.ttrpc.v1.Envelope": ".containerd.types.Envelope",
}
FieldKey = tuple[str, int, int, str]


@pytest.fixture(scope="module")
def debian(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorSet:
    if not DEBIAN_CONTAINERD.is_dir():
        pytest.fail("apt-get install golang-github-containerd-containerd-dev (Debian's 1.6 protos)")
    files = sorted(str(p.relative_to(DEBIAN_SRC)) for p in (DEBIAN_CONTAINERD / "api").rglob("*.proto"))
    files += [f"github.com/containerd/containerd/{f}" for f in DEBIAN_FILES]
    out = tmp_path_factory.mktemp("debian") / "debian.pb"
    gogo = DEBIAN_SRC / "github.com/gogo/protobuf"
    return compile_set(files, [DEBIAN_SRC, gogo, well_known_include(), googleapis_include()], out)


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorSet:
    files = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "containerd").rglob("*.proto"))
    out = tmp_path_factory.mktemp("ours") / "ours.pb"
    return compile_set(files, [PROTO_DIR, well_known_include(), googleapis_include()], out)


def field_key(field: descriptor_pb2.FieldDescriptorProto) -> FieldKey:
    type_name = MOVED.get(field.type_name, field.type_name)
    return (field.name, field.type, field.label, type_name)


def containerd_messages(fds: descriptor_pb2.FileDescriptorSet) -> dict[str, descriptor_pb2.DescriptorProto]:
    return {name: msg for name, msg in messages(fds).items() if not name.startswith((".google.", ".gogoproto."))}


def test_every_debian_message_exists_with_identical_fields(
    debian: descriptor_pb2.FileDescriptorSet, ours: descriptor_pb2.FileDescriptorSet
) -> None:
    theirs, mine = containerd_messages(debian), containerd_messages(ours)
    problems: list[str] = []
    compared_fields = 0
    for name, msg in sorted(theirs.items()):
        target = mine.get(MOVED.get(name, name))
        if target is None:
            problems.append(f"{name}: missing")
            continue
        mine_by_number = {f.number: f for f in target.field}
        for field in msg.field:
            compared_fields += 1
            other = mine_by_number.get(field.number)
            reserved = any(r.start <= field.number < r.end for r in target.reserved_range)
            if other is None and not reserved:  # 2.x removes a few fields, reserving their numbers
                problems.append(f"{name}.{field.name} = {field.number}: missing")
            elif other is not None and field_key(other) != field_key(field):
                problems.append(
                    f"{name}.{field.name} = {field.number}: ours {field_key(other)} theirs {field_key(field)}"
                )
        theirs_oneofs = {f.number: msg.oneof_decl[f.oneof_index].name for f in msg.field if f.HasField("oneof_index")}
        mine_oneofs = {
            f.number: target.oneof_decl[f.oneof_index].name for f in target.field if f.HasField("oneof_index")
        }
        for number, oneof in theirs_oneofs.items():
            if mine_oneofs.get(number) != oneof:
                problems.append(f"{name} field {number}: oneof {oneof} vs {mine_oneofs.get(number)}")
    assert not problems, "\n".join(problems)
    # The comparison must have covered the bulk of the API (Debian 1.6: 204 messages, 470 fields).
    assert len(theirs) > 200
    assert compared_fields > 450


def test_every_debian_enum_value_agrees(
    debian: descriptor_pb2.FileDescriptorSet, ours: descriptor_pb2.FileDescriptorSet
) -> None:
    theirs, mine = enums(debian), enums(ours)
    checked = 0
    for name, enum in theirs.items():
        if name.startswith((".google.", ".gogoproto.")):
            continue
        assert name in mine, f"enum {name} missing"
        assert {v.name: v.number for v in enum.value} == {v.name: v.number for v in mine[name].value}, name
        checked += 1
    assert checked >= 2


def test_every_debian_rpc_agrees(
    debian: descriptor_pb2.FileDescriptorSet, ours: descriptor_pb2.FileDescriptorSet
) -> None:
    theirs, mine = services(debian), services(ours)
    problems: list[str] = []
    rpcs = 0
    for name, svc in sorted(theirs.items()):
        if name not in mine:
            problems.append(f"service {name} missing")
            continue
        my_methods = {m.name: m for m in mine[name].method}
        for method in svc.method:
            rpcs += 1
            other = my_methods.get(method.name)
            if other is None:
                problems.append(f"{name}/{method.name} missing")
                continue
            theirs_sig = (
                MOVED.get(method.input_type, method.input_type),
                MOVED.get(method.output_type, method.output_type),
                method.client_streaming,
                method.server_streaming,
            )
            mine_sig = (other.input_type, other.output_type, other.client_streaming, other.server_streaming)
            if theirs_sig != mine_sig:
                problems.append(f"{name}/{method.name}: ours {mine_sig} theirs {theirs_sig}")
    assert not problems, "\n".join(problems)
    assert rpcs > 80


def test_moved_types_keep_their_fields(
    ours: descriptor_pb2.FileDescriptorSet, debian: descriptor_pb2.FileDescriptorSet
) -> None:
    theirs, mine = messages(debian), messages(ours)
    for old, new in MOVED.items():
        assert [(*field_key(f), f.number) for f in theirs[old].field] == [
            (*field_key(f), f.number) for f in mine[new].field
        ]


@pytest.mark.parametrize(
    ("debian_file", "our_file", "minimum"),
    [
        ("github.com/containerd/cgroups/stats/v1/metrics.proto", "containerd/cgroups/v1/metrics.proto", 50),
        ("github.com/containerd/cgroups/v2/stats/metrics.proto", "containerd/cgroups/v2/metrics.proto", 70),
    ],
)
def test_cgroup_metrics_subset_matches_debian(
    tmp_path_factory: pytest.TempPathFactory, debian_file: str, our_file: str, minimum: int
) -> None:
    if not (DEBIAN_SRC / debian_file).exists():
        pytest.fail("Debian's containerd cgroups protos are missing (golang-github-containerd-cgroups-dev)")
    gogo = DEBIAN_SRC / "github.com/gogo/protobuf"
    theirs = messages(
        compile_set(
            [debian_file], [DEBIAN_SRC, gogo, well_known_include()], tmp_path_factory.mktemp("cg") / "theirs.pb"
        )
    )
    ours = messages(
        compile_set(
            [our_file],
            [PROTO_DIR, well_known_include()],
            tmp_path_factory.mktemp("cg") / "ours.pb",
        )
    )
    compared = 0
    for name, msg in ours.items():
        assert name in theirs, name
        by_number = {f.number: f for f in theirs[name].field}
        for field in msg.field:
            other = by_number[field.number]
            assert (field.name, field.type, field.label, field.type_name) == (
                other.name,
                other.type,
                other.label,
                other.type_name,
            ), f"{name}.{field.name}"
            compared += 1
    assert compared >= minimum
