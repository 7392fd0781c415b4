"""Fuzzing the gRPC API of a running daemon: every method it serves (containerd's services, our
GC service, CRI runtime.v1) gets arbitrary bytes, random well-formed messages built from values
containerd gives meaning to, messages with a field re-encoded with the wrong wire type, and
oversized messages; each under a valid, invalid or missing namespace.

Every call must end with a status that names the problem (never UNKNOWN, which is what an
unhandled exception becomes; INTERNAL only where gRPC itself could not decode the bytes), within
the call's timeout, and the daemon must go on answering with nothing unexpected in its log.

Methods whose success starts processes or reaches the network (creating tasks, sandboxes or CRI
pods, pulling, applying diffs onto arbitrary mounts) get only arbitrary bytes here; their
validation is exercised with targeted bad input below.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import message_factory
from hypothesis import given
from hypothesis import strategies as st

from pycontainerd.api.containerd.services.containers.v1 import containers_pb2
from pycontainerd.api.containerd.services.content.v1 import content_pb2
from pycontainerd.api.containerd.services.images.v1 import images_pb2
from pycontainerd.api.containerd.services.namespaces.v1 import namespace_pb2
from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2
from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2
from pycontainerd.tools.busybox import build_image
from tests.fuzz.budget import count, fuzz_settings
from tests.fuzz.daemonfuzz import CALL_TIMEOUT, Outcome, RawClient, assert_serving, unexpected_in_log
from tests.fuzz.protofuzz import BAD_IDENTIFIERS, DIGESTS, EMPTY_SHA, Method, catalogue, messages
from tests.support.daemon import DaemonProcess, running_daemon

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.fuzz]

METHODS = catalogue()
# Streams that legitimately stay open with nothing to send (the caller cancels them).
OPEN_ENDED = {
    "/containerd.services.events.v1.Events/Subscribe",
    "/runtime.v1.RuntimeService/GetContainerEvents",
    "/containerd.services.streaming.v1.Streaming/Stream",
}
OPEN_ENDED_TIMEOUT = 0.5
# Success would start processes, mount arbitrary sources or dial registries: bytes only.
SIDE_EFFECTS = {
    "/containerd.services.tasks.v1.Tasks/Create",
    "/containerd.services.tasks.v1.Tasks/Start",
    "/containerd.services.tasks.v1.Tasks/Exec",
    "/containerd.services.tasks.v1.Tasks/Checkpoint",
    "/containerd.services.sandbox.v1.Controller/Create",
    "/containerd.services.sandbox.v1.Controller/Start",
    "/containerd.services.diff.v1.Diff/Apply",
    "/containerd.services.diff.v1.Diff/Diff",
    "/containerd.services.transfer.v1.Transfer/Transfer",
    "/runtime.v1.RuntimeService/RunPodSandbox",
    "/runtime.v1.RuntimeService/CreateContainer",
    "/runtime.v1.RuntimeService/StartContainer",
    "/runtime.v1.RuntimeService/ExecSync",
    "/runtime.v1.RuntimeService/Exec",
    "/runtime.v1.RuntimeService/Attach",
    "/runtime.v1.RuntimeService/PortForward",
    "/runtime.v1.RuntimeService/CheckpointContainer",
    "/runtime.v1.ImageService/PullImage",
}
STRUCTURED = [m for m in METHODS if m.path not in SIDE_EFFECTS]
# Header values gRPC can carry at all (printable ASCII); the rest never reaches a server.
HEADER_SAFE = [b for b in BAD_IDENTIFIERS if b.isascii() and b.isprintable()]
NAMESPACES = st.sampled_from([None, "fuzz", "fuzz", "default", "k8s.io", *HEADER_SAFE])
LEASES = st.sampled_from([None, None, None, "fuzz", "missing", "../x"])


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """A daemon holding objects the fuzzed requests can name (identifiers "fuzz", "c1", "a" are in
    the pools): an image and its content, a container, a lease, snapshots."""
    with running_daemon() as d:
        image = build_image(tmp_path_factory.mktemp("fuzz-image") / "busybox.tar")
        d.ctr("images", "import", str(image.path), namespace="fuzz")
        d.ctr("containers", "create", image.ref, "c1", namespace="fuzz")
        d.ctr("leases", "create", "--id", "fuzz", namespace="fuzz")
        d.ctr("snapshots", "prepare", "a", namespace="fuzz")
        yield d


@pytest.fixture(scope="module")
def client(daemon: DaemonProcess) -> Iterator[RawClient]:
    c = RawClient(str(daemon.address))
    yield c
    c.close()


@pytest.fixture(autouse=True)
def still_serving(daemon: DaemonProcess, client: RawClient) -> Iterator[None]:
    """After each test: the daemon answers, and logged nothing unexpected during the test."""
    since = len(daemon.log())
    yield
    assert_serving(daemon, client)
    assert not unexpected_in_log(daemon, since), "\n\n".join(unexpected_in_log(daemon, since))


def metadata(namespace: str | None, lease: str | None) -> list[tuple[str, str]]:
    md = []
    if namespace is not None:
        md.append(("containerd-namespace", namespace))
    if lease is not None:
        md.append(("containerd-lease", lease))
    return md


def call(client: RawClient, method: Method, payloads: list[bytes], md: list[tuple[str, str]]) -> Outcome:
    return client.call(
        method.path,
        payloads,
        streaming_request=method.streaming_request,
        streaming_response=method.streaming_response,
        metadata=md,
        timeout=OPEN_ENDED_TIMEOUT if method.path in OPEN_ENDED else CALL_TIMEOUT,
    )


def check(method: Method, outcome: Outcome, *, decodable: bool) -> None:
    """The status names the problem: not UNKNOWN (an unhandled exception), not a timeout (a hang),
    INTERNAL only for bytes gRPC cannot decode."""
    assert outcome.code != grpc.StatusCode.UNKNOWN, f"{method.path}: UNKNOWN: {outcome.details}"
    if method.path not in OPEN_ENDED:
        assert outcome.code != grpc.StatusCode.DEADLINE_EXCEEDED, f"{method.path} hung"
    if decodable:
        assert outcome.code != grpc.StatusCode.INTERNAL, f"{method.path}: INTERNAL: {outcome.details}"


@fuzz_settings(400)
@given(
    method=st.sampled_from(METHODS),
    payloads=st.lists(st.binary(max_size=200), min_size=1, max_size=3),
    namespace=NAMESPACES,
)
def test_arbitrary_bytes_to_every_method(
    client: RawClient, method: Method, payloads: list[bytes], namespace: str | None
) -> None:
    count("grpc: arbitrary bytes")
    outcome = call(client, method, payloads, metadata(namespace, None))
    request_cls = message_factory.GetMessageClass(method.descriptor.input_type)
    try:
        for payload in payloads:
            request_cls.FromString(payload)
        decodable = True
    except Exception:
        decodable = False
    check(method, outcome, decodable=decodable and method.path not in SIDE_EFFECTS)


@st.composite
def structured_call(draw: st.DrawFn) -> tuple[Method, list[bytes]]:
    method = draw(st.sampled_from(STRUCTURED))
    n = draw(st.integers(1, 3)) if method.streaming_request else 1
    strategy = messages(method.descriptor.input_type)
    return method, [draw(strategy).SerializeToString() for _ in range(n)]


@fuzz_settings(1200)
@given(request=structured_call(), namespace=NAMESPACES, lease=LEASES)
def test_random_messages_to_every_method(
    client: RawClient, request: tuple[Method, list[bytes]], namespace: str | None, lease: str | None
) -> None:
    method, payloads = request
    count("grpc: well-formed random messages")
    check(method, call(client, method, payloads, metadata(namespace, lease)), decodable=True)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@fuzz_settings(200)
@given(
    method=st.sampled_from(STRUCTURED),
    field_number=st.integers(1, 20),
    wire_type=st.sampled_from([0, 1, 2, 5, 3, 4, 6, 7]),
    body=st.binary(max_size=16),
    namespace=NAMESPACES,
)
def test_fields_with_the_wrong_wire_type(
    client: RawClient, method: Method, field_number: int, wire_type: int, body: bytes, namespace: str | None
) -> None:
    """A field encoded with another wire type than its declared one (a string sent as a varint,
    a message as a fixed64, groups, invalid wire types 6 and 7)."""
    count("grpc: wrong wire types")
    tag = _varint(field_number << 3 | wire_type)
    if wire_type == 0:
        payload = tag + _varint(int.from_bytes(body or b"\x01", "little"))
    elif wire_type == 1:
        payload = tag + body.ljust(8, b"\0")[:8]
    elif wire_type == 5:
        payload = tag + body.ljust(4, b"\0")[:4]
    elif wire_type == 2:
        payload = tag + _varint(len(body)) + body
    else:
        payload = tag + body
    check(method, call(client, method, [payload], metadata(namespace, None)), decodable=False)


@pytest.mark.parametrize("size", [(16 << 20) + 1, 20 << 20])
def test_oversized_requests_are_refused(client: RawClient, size: int) -> None:
    """Over the 16 MiB message limit containerd and ctr use: RESOURCE_EXHAUSTED, nothing read."""
    count("grpc: oversized messages")
    request = containers_pb2.CreateContainerRequest()
    request.container.id = "big"
    request.container.labels["k"] = "x" * size
    outcome = client.call(
        "/containerd.services.containers.v1.Containers/Create",
        [request.SerializeToString()],
        metadata=[("containerd-namespace", "fuzz")],
    )
    assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome


def test_large_but_allowed_request_gets_a_clean_error(client: RawClient) -> None:
    """15 MiB of labels fit in a message, not in containerd's label limits: INVALID_ARGUMENT."""
    count("grpc: oversized messages")
    request = containers_pb2.CreateContainerRequest()
    request.container.id = "big"
    request.container.runtime.name = "io.containerd.runc.v2"
    request.container.labels["k"] = "x" * (15 << 20)
    outcome = client.call(
        "/containerd.services.containers.v1.Containers/Create",
        [request.SerializeToString()],
        metadata=[("containerd-namespace", "fuzz")],
    )
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome


NS = [("containerd-namespace", "fuzz")]


INVALID_DIGESTS = [d for d in DIGESTS if d not in (EMPTY_SHA, "sha256:" + "0" * 64, "sha512:" + "0" * 128)]
NOT_FOUND_OR_INVALID = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
Case = tuple[str, bytes, list[tuple[str, str]], "grpc.StatusCode | tuple[grpc.StatusCode, ...]"]


def _targeted() -> list[Case]:
    """(method, request, metadata, expected code(s)): identifiers and digests containerd refuses."""
    cases: list[Case] = []
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    for bad in HEADER_SAFE:
        if not bad:
            continue  # an empty namespace header is no namespace
        cases.append(
            ("/containerd.services.containers.v1.Containers/List", b"", [("containerd-namespace", bad)], invalid)
        )
    cases.append(("/containerd.services.containers.v1.Containers/List", b"", [], grpc.StatusCode.FAILED_PRECONDITION))
    for bad in BAD_IDENTIFIERS:
        c = containers_pb2.CreateContainerRequest()
        c.container.id = bad
        c.container.runtime.name = "io.containerd.runc.v2"
        cases.append(("/containerd.services.containers.v1.Containers/Create", c.SerializeToString(), NS, invalid))
        ns = namespace_pb2.CreateNamespaceRequest()
        ns.namespace.name = bad
        cases.append(("/containerd.services.namespaces.v1.Namespaces/Create", ns.SerializeToString(), [], invalid))
        task = tasks_pb2.CreateTaskRequest(container_id=bad)
        # containerd looks the container up without validating the ID first: NotFound there.
        cases.append(("/containerd.services.tasks.v1.Tasks/Create", task.SerializeToString(), NS, NOT_FOUND_OR_INVALID))
    for digest in INVALID_DIGESTS:
        for path, msg in (
            ("/containerd.services.content.v1.Content/Info", content_pb2.InfoRequest(digest=digest)),
            ("/containerd.services.content.v1.Content/Delete", content_pb2.DeleteContentRequest(digest=digest)),
            ("/containerd.services.content.v1.Content/Read", content_pb2.ReadContentRequest(digest=digest)),
        ):
            cases.append((path, msg.SerializeToString(), NS, invalid))
        img = images_pb2.CreateImageRequest()
        img.image.name = "docker.io/library/x:1"
        img.image.target.digest = digest
        img.image.target.media_type = "application/vnd.oci.image.manifest.v1+json"
        cases.append(("/containerd.services.images.v1.Images/Create", img.SerializeToString(), NS, invalid))
    not_found = grpc.StatusCode.NOT_FOUND
    cases += [
        (
            "/containerd.services.content.v1.Content/Info",
            content_pb2.InfoRequest(digest=DIGESTS[1]).SerializeToString(),
            NS,
            not_found,
        ),
        (
            "/containerd.services.snapshots.v1.Snapshots/Stat",
            snapshots_pb2.StatSnapshotRequest(snapshotter="overlayfs", key="missing").SerializeToString(),
            NS,
            not_found,
        ),
        (
            "/containerd.services.snapshots.v1.Snapshots/Stat",
            snapshots_pb2.StatSnapshotRequest(snapshotter="../../x", key="k").SerializeToString(),
            NS,
            invalid,
        ),
        (
            "/containerd.services.tasks.v1.Tasks/Create",
            tasks_pb2.CreateTaskRequest(container_id="missing").SerializeToString(),
            NS,
            not_found,
        ),
    ]
    return cases


@pytest.mark.parametrize(
    "case", _targeted(), ids=lambda c: f"{c[0].rsplit('/', 2)[-2].rsplit('.', 1)[-1]}.{c[0].rsplit('/', 1)[-1]}"
)
def test_invalid_identifiers_and_digests(client: RawClient, case: Case) -> None:
    path, payload, md, expected = case
    count("grpc: targeted identifiers and digests")
    method = next(m for m in METHODS if m.path == path)
    outcome = call(client, method, [payload], md)
    assert outcome.code in (expected if isinstance(expected, tuple) else (expected,)), (path, md, outcome)
