"""The Sandbox Store service over gRPC, as a containerd 2.x client calls it."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2

from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2 as pb
from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import sandbox_pb2 as types_pb
from tests.support.daemon import DaemonProcess

pytestmark = [pytest.mark.integration, pytest.mark.root]

MD = (("containerd-namespace", "sbx"),)


def stub(d: DaemonProcess) -> pb_grpc.StoreStub:
    return pb_grpc.StoreStub(grpc.insecure_channel(f"unix:{d.address}"))


def record(sid: str, **labels: str) -> types_pb.Sandbox:
    spec = any_pb2.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/Spec", value=b"{}")
    return types_pb.Sandbox(
        sandbox_id=sid,
        runtime=types_pb.Sandbox.Runtime(name="io.containerd.runc.v2"),
        spec=spec,
        labels=labels,
        sandboxer="podsandbox",
    )


def test_store_round_trip_and_codes(daemon: DaemonProcess) -> None:
    s = stub(daemon)
    created = s.Create(pb.StoreCreateRequest(sandbox=record("pod-a", tier="web")), metadata=MD).sandbox
    assert created.created_at.seconds > 0 and created.sandboxer == "podsandbox"
    s.Create(pb.StoreCreateRequest(sandbox=record("pod-b")), metadata=MD)
    listing = s.List(pb.StoreListRequest(filters=["labels.tier==web"]), metadata=MD).list
    assert [x.sandbox_id for x in listing] == ["pod-a"]
    got = s.Get(pb.StoreGetRequest(sandbox_id="pod-a"), metadata=MD).sandbox
    assert got.spec.value == b"{}" and dict(got.labels) == {"tier": "web"}
    updated = s.Update(
        pb.StoreUpdateRequest(sandbox=record("pod-a", tier="db"), fields=["labels.tier"]), metadata=MD
    ).sandbox
    assert dict(updated.labels) == {"tier": "db"}

    with pytest.raises(grpc.RpcError) as err:
        s.Create(pb.StoreCreateRequest(sandbox=record("pod-a")), metadata=MD)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as err:
        s.Create(pb.StoreCreateRequest(sandbox=types_pb.Sandbox(sandbox_id="x")), metadata=MD)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        s.Get(pb.StoreGetRequest(sandbox_id="pod-a"), metadata=(("containerd-namespace", "elsewhere"),))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        s.List(pb.StoreListRequest())
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, "a namespace is required"

    s.Delete(pb.StoreDeleteRequest(sandbox_id="pod-a"), metadata=MD)
    with pytest.raises(grpc.RpcError) as err:
        s.Delete(pb.StoreDeleteRequest(sandbox_id="pod-a"), metadata=MD)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # As in containerd, sandboxes do not keep a namespace from being deleted; they go with it.
    daemon.ctr("namespaces", "rm", "sbx")
    with pytest.raises(grpc.RpcError) as err:
        s.Get(pb.StoreGetRequest(sandbox_id="pod-b"), metadata=MD)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
