"""Wire facts of the Kubernetes CRI v1 API (``runtime.v1``) that a kubelet depends on.

The table below is kept by hand from upstream cri-api ``pkg/apis/runtime/v1/api.proto``.
Our own ``proto/k8s/cri/runtime/v1/api.proto`` is compiled with grpc_tools.protoc into a
descriptor set in a temporary directory and read with ``descriptor_pb2``; no generated module
is imported and nothing is loaded into the default descriptor pool. No network is needed.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "proto"
CRI_PROTO = "k8s/cri/runtime/v1/api.proto"
PACKAGE = "runtime.v1"

FDP = descriptor_pb2.FieldDescriptorProto

# service -> [(rpc, request, response, server_streaming)], in upstream order.
RPCS: dict[str, list[tuple[str, str, str, bool]]] = {
    "RuntimeService": [
        ("Version", "VersionRequest", "VersionResponse", False),
        ("RunPodSandbox", "RunPodSandboxRequest", "RunPodSandboxResponse", False),
        ("StopPodSandbox", "StopPodSandboxRequest", "StopPodSandboxResponse", False),
        ("RemovePodSandbox", "RemovePodSandboxRequest", "RemovePodSandboxResponse", False),
        ("PodSandboxStatus", "PodSandboxStatusRequest", "PodSandboxStatusResponse", False),
        ("ListPodSandbox", "ListPodSandboxRequest", "ListPodSandboxResponse", False),
        ("StreamPodSandboxes", "StreamPodSandboxesRequest", "StreamPodSandboxesResponse", True),
        ("CreateContainer", "CreateContainerRequest", "CreateContainerResponse", False),
        ("StartContainer", "StartContainerRequest", "StartContainerResponse", False),
        ("StopContainer", "StopContainerRequest", "StopContainerResponse", False),
        ("RemoveContainer", "RemoveContainerRequest", "RemoveContainerResponse", False),
        ("ListContainers", "ListContainersRequest", "ListContainersResponse", False),
        ("StreamContainers", "StreamContainersRequest", "StreamContainersResponse", True),
        ("ContainerStatus", "ContainerStatusRequest", "ContainerStatusResponse", False),
        (
            "UpdateContainerResources",
            "UpdateContainerResourcesRequest",
            "UpdateContainerResourcesResponse",
            False,
        ),
        ("ReopenContainerLog", "ReopenContainerLogRequest", "ReopenContainerLogResponse", False),
        ("ExecSync", "ExecSyncRequest", "ExecSyncResponse", False),
        ("Exec", "ExecRequest", "ExecResponse", False),
        ("Attach", "AttachRequest", "AttachResponse", False),
        ("PortForward", "PortForwardRequest", "PortForwardResponse", False),
        ("ContainerStats", "ContainerStatsRequest", "ContainerStatsResponse", False),
        ("ListContainerStats", "ListContainerStatsRequest", "ListContainerStatsResponse", False),
        ("StreamContainerStats", "StreamContainerStatsRequest", "StreamContainerStatsResponse", True),
        ("PodSandboxStats", "PodSandboxStatsRequest", "PodSandboxStatsResponse", False),
        ("ListPodSandboxStats", "ListPodSandboxStatsRequest", "ListPodSandboxStatsResponse", False),
        ("StreamPodSandboxStats", "StreamPodSandboxStatsRequest", "StreamPodSandboxStatsResponse", True),
        ("UpdateRuntimeConfig", "UpdateRuntimeConfigRequest", "UpdateRuntimeConfigResponse", False),
        ("Status", "StatusRequest", "StatusResponse", False),
        ("CheckpointContainer", "CheckpointContainerRequest", "CheckpointContainerResponse", False),
        ("CheckpointPod", "CheckpointPodRequest", "CheckpointPodResponse", False),
        ("RestorePod", "RestorePodRequest", "RestorePodResponse", False),
        ("GetContainerEvents", "GetEventsRequest", "ContainerEventResponse", True),
        ("ListMetricDescriptors", "ListMetricDescriptorsRequest", "ListMetricDescriptorsResponse", False),
        ("ListPodSandboxMetrics", "ListPodSandboxMetricsRequest", "ListPodSandboxMetricsResponse", False),
        (
            "StreamPodSandboxMetrics",
            "StreamPodSandboxMetricsRequest",
            "StreamPodSandboxMetricsResponse",
            True,
        ),
        ("RuntimeConfig", "RuntimeConfigRequest", "RuntimeConfigResponse", False),
        (
            "UpdatePodSandboxResources",
            "UpdatePodSandboxResourcesRequest",
            "UpdatePodSandboxResourcesResponse",
            False,
        ),
    ],
    "ImageService": [
        ("ListImages", "ListImagesRequest", "ListImagesResponse", False),
        ("StreamImages", "StreamImagesRequest", "StreamImagesResponse", True),
        ("ImageStatus", "ImageStatusRequest", "ImageStatusResponse", False),
        ("PullImage", "PullImageRequest", "PullImageResponse", False),
        ("RemoveImage", "RemoveImageRequest", "RemoveImageResponse", False),
        ("ImageFsInfo", "ImageFsInfoRequest", "ImageFsInfoResponse", False),
    ],
}

MAP_SS = "map<string, string>"

# message -> {field: (number, type)}; type is a scalar, a runtime.v1 name, "repeated X" or a map.
FIELDS: dict[str, dict[str, tuple[int, str]]] = {
    "VersionRequest": {"version": (1, "string")},
    "VersionResponse": {
        "version": (1, "string"),
        "runtime_name": (2, "string"),
        "runtime_version": (3, "string"),
        "runtime_api_version": (4, "string"),
    },
    "PodSandboxMetadata": {
        "name": (1, "string"),
        "uid": (2, "string"),
        "namespace": (3, "string"),
        "attempt": (4, "uint32"),
    },
    "PodSandboxConfig": {
        "metadata": (1, "PodSandboxMetadata"),
        "hostname": (2, "string"),
        "log_directory": (3, "string"),
        "dns_config": (4, "DNSConfig"),
        "port_mappings": (5, "repeated PortMapping"),
        "labels": (6, MAP_SS),
        "annotations": (7, MAP_SS),
        "linux": (8, "LinuxPodSandboxConfig"),
        "windows": (9, "WindowsPodSandboxConfig"),
    },
    "LinuxPodSandboxConfig": {
        "cgroup_parent": (1, "string"),
        "security_context": (2, "LinuxSandboxSecurityContext"),
        "sysctls": (3, MAP_SS),
        "overhead": (4, "LinuxContainerResources"),
        "resources": (5, "LinuxContainerResources"),
    },
    "RunPodSandboxRequest": {
        "config": (1, "PodSandboxConfig"),
        "runtime_handler": (2, "string"),
    },
    "RunPodSandboxResponse": {"pod_sandbox_id": (1, "string")},
    "ContainerMetadata": {"name": (1, "string"), "attempt": (2, "uint32")},
    "ContainerConfig": {
        "metadata": (1, "ContainerMetadata"),
        "image": (2, "ImageSpec"),
        "command": (3, "repeated string"),
        "args": (4, "repeated string"),
        "working_dir": (5, "string"),
        "envs": (6, "repeated KeyValue"),
        "mounts": (7, "repeated Mount"),
        "devices": (8, "repeated Device"),
        "labels": (9, MAP_SS),
        "annotations": (10, MAP_SS),
        "log_path": (11, "string"),
        "stdin": (12, "bool"),
        "stdin_once": (13, "bool"),
        "tty": (14, "bool"),
        "linux": (15, "LinuxContainerConfig"),
        "windows": (16, "WindowsContainerConfig"),
        "CDI_devices": (17, "repeated CDIDevice"),
        "stop_signal": (18, "Signal"),
    },
    "CreateContainerRequest": {
        "pod_sandbox_id": (1, "string"),
        "config": (2, "ContainerConfig"),
        "sandbox_config": (3, "PodSandboxConfig"),
    },
    "LinuxContainerConfig": {
        "resources": (1, "LinuxContainerResources"),
        "security_context": (2, "LinuxContainerSecurityContext"),
    },
    "LinuxContainerResources": {
        "cpu_period": (1, "int64"),
        "cpu_quota": (2, "int64"),
        "cpu_shares": (3, "int64"),
        "memory_limit_in_bytes": (4, "int64"),
        "oom_score_adj": (5, "int64"),
        "cpuset_cpus": (6, "string"),
        "cpuset_mems": (7, "string"),
        "hugepage_limits": (8, "repeated HugepageLimit"),
        "unified": (9, MAP_SS),
        "memory_swap_limit_in_bytes": (10, "int64"),
    },
    "LinuxContainerSecurityContext": {
        "capabilities": (1, "Capability"),
        "privileged": (2, "bool"),
        "namespace_options": (3, "NamespaceOption"),
        "selinux_options": (4, "SELinuxOption"),
        "run_as_user": (5, "Int64Value"),
        "run_as_username": (6, "string"),
        "readonly_rootfs": (7, "bool"),
        "supplemental_groups": (8, "repeated int64"),
        "apparmor_profile": (9, "string"),
        "seccomp_profile_path": (10, "string"),
        "no_new_privs": (11, "bool"),
        "run_as_group": (12, "Int64Value"),
        "masked_paths": (13, "repeated string"),
        "readonly_paths": (14, "repeated string"),
        "seccomp": (15, "SecurityProfile"),
        "apparmor": (16, "SecurityProfile"),
        "supplemental_groups_policy": (17, "SupplementalGroupsPolicy"),
    },
    "NamespaceOption": {
        "network": (1, "NamespaceMode"),
        "pid": (2, "NamespaceMode"),
        "ipc": (3, "NamespaceMode"),
        "target_id": (4, "string"),
        "userns_options": (5, "UserNamespace"),
    },
    "SecurityProfile": {
        "profile_type": (1, "SecurityProfile.ProfileType"),
        "localhost_ref": (2, "string"),
    },
    "Mount": {
        "container_path": (1, "string"),
        "host_path": (2, "string"),
        "readonly": (3, "bool"),
        "selinux_relabel": (4, "bool"),
        "propagation": (5, "MountPropagation"),
        "uidMappings": (6, "repeated IDMapping"),
        "gidMappings": (7, "repeated IDMapping"),
        "recursive_read_only": (8, "bool"),
        "image": (9, "ImageSpec"),
        "image_sub_path": (10, "string"),
        "mount_options": (11, "repeated string"),
    },
    "PortMapping": {
        "protocol": (1, "Protocol"),
        "container_port": (2, "int32"),
        "host_port": (3, "int32"),
        "host_ip": (4, "string"),
    },
    "ImageSpec": {
        "image": (1, "string"),
        "annotations": (2, MAP_SS),
        "user_specified_image": (18, "string"),
        "runtime_handler": (19, "string"),
        "image_ref": (20, "string"),
    },
    "PullImageRequest": {
        "image": (1, "ImageSpec"),
        "auth": (2, "AuthConfig"),
        "sandbox_config": (3, "PodSandboxConfig"),
    },
    "PullImageResponse": {"image_ref": (1, "string")},
    "AuthConfig": {
        "username": (1, "string"),
        "password": (2, "string"),
        "auth": (3, "string"),
        "server_address": (4, "string"),
        "identity_token": (5, "string"),
        "registry_token": (6, "string"),
    },
    "Image": {
        "id": (1, "string"),
        "repo_tags": (2, "repeated string"),
        "repo_digests": (3, "repeated string"),
        "size": (4, "uint64"),
        "uid": (5, "Int64Value"),
        "username": (6, "string"),
        "spec": (7, "ImageSpec"),
        "pinned": (8, "bool"),
    },
    "PodSandbox": {
        "id": (1, "string"),
        "metadata": (2, "PodSandboxMetadata"),
        "state": (3, "PodSandboxState"),
        "created_at": (4, "int64"),
        "labels": (5, MAP_SS),
        "annotations": (6, MAP_SS),
        "runtime_handler": (7, "string"),
    },
    "PodSandboxStatus": {
        "id": (1, "string"),
        "metadata": (2, "PodSandboxMetadata"),
        "state": (3, "PodSandboxState"),
        "created_at": (4, "int64"),
        "network": (5, "PodSandboxNetworkStatus"),
        "linux": (6, "LinuxPodSandboxStatus"),
        "labels": (7, MAP_SS),
        "annotations": (8, MAP_SS),
        "runtime_handler": (9, "string"),
    },
    "PodSandboxStatusResponse": {
        "status": (1, "PodSandboxStatus"),
        "info": (2, MAP_SS),
        "containers_statuses": (3, "repeated ContainerStatus"),
        "timestamp": (4, "int64"),
    },
    "Container": {
        "id": (1, "string"),
        "pod_sandbox_id": (2, "string"),
        "metadata": (3, "ContainerMetadata"),
        "image": (4, "ImageSpec"),
        "image_ref": (5, "string"),
        "state": (6, "ContainerState"),
        "created_at": (7, "int64"),
        "labels": (8, MAP_SS),
        "annotations": (9, MAP_SS),
        "image_id": (10, "string"),
    },
    "ContainerStatus": {
        "id": (1, "string"),
        "metadata": (2, "ContainerMetadata"),
        "state": (3, "ContainerState"),
        "created_at": (4, "int64"),
        "started_at": (5, "int64"),
        "finished_at": (6, "int64"),
        "exit_code": (7, "int32"),
        "image": (8, "ImageSpec"),
        "image_ref": (9, "string"),
        "reason": (10, "string"),
        "message": (11, "string"),
        "labels": (12, MAP_SS),
        "annotations": (13, MAP_SS),
        "mounts": (14, "repeated Mount"),
        "log_path": (15, "string"),
        "resources": (16, "ContainerResources"),
        "image_id": (17, "string"),
        "user": (18, "ContainerUser"),
        "stop_signal": (19, "Signal"),
    },
    "ContainerStatusResponse": {"status": (1, "ContainerStatus"), "info": (2, MAP_SS)},
    "ContainerFilter": {
        "id": (1, "string"),
        "state": (2, "ContainerStateValue"),
        "pod_sandbox_id": (3, "string"),
        "label_selector": (4, MAP_SS),
    },
    "StopContainerRequest": {"container_id": (1, "string"), "timeout": (2, "int64")},
    "ExecSyncRequest": {
        "container_id": (1, "string"),
        "cmd": (2, "repeated string"),
        "timeout": (3, "int64"),
    },
    "ExecSyncResponse": {
        "stdout": (1, "bytes"),
        "stderr": (2, "bytes"),
        "exit_code": (3, "int32"),
    },
    "ExecRequest": {
        "container_id": (1, "string"),
        "cmd": (2, "repeated string"),
        "tty": (3, "bool"),
        "stdin": (4, "bool"),
        "stdout": (5, "bool"),
        "stderr": (6, "bool"),
    },
    "ExecResponse": {"url": (1, "string")},
    "UpdateContainerResourcesRequest": {
        "container_id": (1, "string"),
        "linux": (2, "LinuxContainerResources"),
        "windows": (3, "WindowsContainerResources"),
        "annotations": (4, MAP_SS),
    },
    "StatusResponse": {
        "status": (1, "RuntimeStatus"),
        "info": (2, MAP_SS),
        "runtime_handlers": (3, "repeated RuntimeHandler"),
        "features": (4, "RuntimeFeatures"),
    },
    "RuntimeStatus": {"conditions": (1, "repeated RuntimeCondition")},
    "RuntimeCondition": {
        "type": (1, "string"),
        "status": (2, "bool"),
        "reason": (3, "string"),
        "message": (4, "string"),
    },
    "ContainerEventResponse": {
        "container_id": (1, "string"),
        "container_event_type": (2, "ContainerEventType"),
        "created_at": (3, "int64"),
        "pod_sandbox_status": (4, "PodSandboxStatus"),
        "containers_statuses": (5, "repeated ContainerStatus"),
    },
    "RuntimeConfigResponse": {"linux": (1, "LinuxRuntimeConfiguration")},
    "LinuxRuntimeConfiguration": {"cgroup_driver": (1, "CgroupDriver")},
}

# enum -> [(value, number)], in upstream order.
ENUMS: dict[str, list[tuple[str, int]]] = {
    "Protocol": [("TCP", 0), ("UDP", 1), ("SCTP", 2)],
    "MountPropagation": [
        ("PROPAGATION_PRIVATE", 0),
        ("PROPAGATION_HOST_TO_CONTAINER", 1),
        ("PROPAGATION_BIDIRECTIONAL", 2),
    ],
    "NamespaceMode": [("POD", 0), ("CONTAINER", 1), ("NODE", 2), ("TARGET", 3)],
    "PodSandboxState": [("SANDBOX_READY", 0), ("SANDBOX_NOTREADY", 1)],
    "ContainerState": [
        ("CONTAINER_CREATED", 0),
        ("CONTAINER_RUNNING", 1),
        ("CONTAINER_EXITED", 2),
        ("CONTAINER_UNKNOWN", 3),
    ],
    "ContainerEventType": [
        ("CONTAINER_CREATED_EVENT", 0),
        ("CONTAINER_STARTED_EVENT", 1),
        ("CONTAINER_STOPPED_EVENT", 2),
        ("CONTAINER_DELETED_EVENT", 3),
    ],
    "SupplementalGroupsPolicy": [("Merge", 0), ("Strict", 1)],
    "CgroupDriver": [("SYSTEMD", 0), ("CGROUPFS", 1)],
    "MetricType": [("COUNTER", 0), ("GAUGE", 1)],
    "SecurityProfile.ProfileType": [("RuntimeDefault", 0), ("Unconfined", 1), ("Localhost", 2)],
}

# Signal has 66 values; spot-check the ends and a few a kubelet sends.
SIGNAL_SPOT = {
    "SIGNAL_RUNTIME_DEFAULT": 0,
    "SIGNAL_SIGHUP": 8,
    "SIGNAL_SIGINT": 10,
    "SIGNAL_SIGKILL": 13,
    "SIGNAL_SIGQUIT": 18,
    "SIGNAL_SIGTERM": 23,
    "SIGNAL_SIGUSR1": 29,
    "SIGNAL_SIGWINCH": 32,
    "SIGNAL_SIGRTMIN": 35,
    "SIGNAL_SIGRTMAX": 65,
}

_SCALARS: dict[int, str] = {
    FDP.TYPE_DOUBLE: "double",
    FDP.TYPE_FLOAT: "float",
    FDP.TYPE_INT64: "int64",
    FDP.TYPE_UINT64: "uint64",
    FDP.TYPE_INT32: "int32",
    FDP.TYPE_FIXED64: "fixed64",
    FDP.TYPE_FIXED32: "fixed32",
    FDP.TYPE_BOOL: "bool",
    FDP.TYPE_STRING: "string",
    FDP.TYPE_BYTES: "bytes",
    FDP.TYPE_UINT32: "uint32",
    FDP.TYPE_SFIXED32: "sfixed32",
    FDP.TYPE_SFIXED64: "sfixed64",
    FDP.TYPE_SINT32: "sint32",
    FDP.TYPE_SINT64: "sint64",
}


def _local(type_name: str) -> str:
    prefix = f".{PACKAGE}."
    assert type_name.startswith(prefix), f"{type_name} is outside {PACKAGE}"
    return type_name[len(prefix) :]


def _field_type(msg: descriptor_pb2.DescriptorProto, field: descriptor_pb2.FieldDescriptorProto) -> str:
    """Render a field's wire type the way the FIELDS table spells it."""
    if field.type in _SCALARS:
        base = _SCALARS[field.type]
    else:
        base = _local(field.type_name)
        entries = {n.name: n for n in msg.nested_type if n.options.map_entry}
        owner, _, short = base.rpartition(".")
        if field.type == FDP.TYPE_MESSAGE and owner == msg.name and short in entries:
            assert field.label == FDP.LABEL_REPEATED
            key, value = entries[short].field
            return f"map<{_field_type(entries[short], key)}, {_field_type(entries[short], value)}>"
    return f"repeated {base}" if field.label == FDP.LABEL_REPEATED else base


@pytest.fixture(scope="module")
def cri_file(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorProto:
    spec = importlib.util.find_spec("grpc_tools")
    if spec is None or spec.origin is None:
        pytest.skip("grpcio-tools is not installed")
    well_known = Path(spec.origin).parent / "_proto"
    out = tmp_path_factory.mktemp("cri") / "cri.pb"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--descriptor_set_out={out}",
            CRI_PROTO,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    assert len(fds.file) == 1
    return fds.file[0]


def _messages(fd: descriptor_pb2.FileDescriptorProto) -> dict[str, descriptor_pb2.DescriptorProto]:
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(msg: descriptor_pb2.DescriptorProto, prefix: str) -> None:
        found[prefix + msg.name] = msg
        for nested in msg.nested_type:
            walk(nested, f"{prefix}{msg.name}.")

    for msg in fd.message_type:
        walk(msg, "")
    return found


def _enums(fd: descriptor_pb2.FileDescriptorProto) -> dict[str, descriptor_pb2.EnumDescriptorProto]:
    found = {e.name: e for e in fd.enum_type}
    for name, msg in _messages(fd).items():
        found.update({f"{name}.{e.name}": e for e in msg.enum_type})
    return found


def test_file_header(cri_file: descriptor_pb2.FileDescriptorProto) -> None:
    assert cri_file.name == CRI_PROTO
    assert cri_file.package == PACKAGE
    assert cri_file.syntax == "proto3"
    assert list(cri_file.dependency) == []
    assert not cri_file.options.HasField("go_package")


def test_services_and_rpcs(cri_file: descriptor_pb2.FileDescriptorProto) -> None:
    assert [s.name for s in cri_file.service] == list(RPCS)
    for service in cri_file.service:
        got = [(m.name, _local(m.input_type), _local(m.output_type), m.server_streaming) for m in service.method]
        assert got == RPCS[service.name], service.name
        assert not any(m.client_streaming for m in service.method), service.name


def test_rpc_counts(cri_file: descriptor_pb2.FileDescriptorProto) -> None:
    counts = {s.name: len(s.method) for s in cri_file.service}
    assert counts == {"RuntimeService": 37, "ImageService": 6}


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_message_fields(cri_file: descriptor_pb2.FileDescriptorProto, name: str) -> None:
    msg = _messages(cri_file)[name]
    got = {f.name: (f.number, _field_type(msg, f)) for f in msg.field}
    assert got == FIELDS[name]
    assert not msg.oneof_decl
    assert not any(f.proto3_optional for f in msg.field)


@pytest.mark.parametrize("name", sorted(ENUMS))
def test_enum_values(cri_file: descriptor_pb2.FileDescriptorProto, name: str) -> None:
    got = [(v.name, v.number) for v in _enums(cri_file)[name].value]
    assert got == ENUMS[name]


def test_signal_enum(cri_file: descriptor_pb2.FileDescriptorProto) -> None:
    values = {v.name: v.number for v in _enums(cri_file)["Signal"].value}
    assert len(values) == 66
    assert sorted(values.values()) == list(range(66))
    for name, number in SIGNAL_SPOT.items():
        assert values[name] == number, name


def test_every_referenced_type_is_declared(cri_file: descriptor_pb2.FileDescriptorProto) -> None:
    declared = {f".{PACKAGE}.{n}" for n in (*_messages(cri_file), *_enums(cri_file))}
    for name, msg in _messages(cri_file).items():
        for field in msg.field:
            if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM):
                assert field.type_name in declared, f"{name}.{field.name}"
    for service in cri_file.service:
        for method in service.method:
            assert method.input_type in declared
            assert method.output_type in declared


def test_inventory(cri_file: descriptor_pb2.FileDescriptorProto) -> None:
    messages = _messages(cri_file)
    maps = [m for m in messages.values() if m.options.map_entry]
    assert len(messages) - len(maps) == 175
    assert len(maps) == 30
    assert len(_enums(cri_file)) == 11
