"""Container mounts: propagation, read-only modes, pod files, image volumes, overrides of default mounts."""

from __future__ import annotations

from typing import Any, cast

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri.spec import ImageConfig, SandboxFiles
from pycontainerd.errdefs import FailedPrecondition, InvalidArgument, Unimplemented
from tests.unit.cri.spec.helpers import FILES, IMAGE, build, container_config, mount_at, options


def _with_mount(mount: api.Mount, **opts: Any) -> dict[str, Any]:
    config = container_config()
    config.mounts.append(mount)
    return build(config, opts=options(**opts))


def test_kubelet_mounts_are_rbinds() -> None:
    spec = build()
    assert mount_at(spec, "/container-path-1") == {
        "destination": "/container-path-1",
        "type": "bind",
        "source": "/host-path-1",
        "options": ["rbind", "rprivate", "rw"],
    }
    assert mount_at(spec, "/container-path-2")["options"] == ["rbind", "rprivate", "ro"]


@pytest.mark.parametrize(
    ("propagation", "optional", "flag", "rootfs"),
    [
        (api.PROPAGATION_PRIVATE, "", "rprivate", None),
        (api.PROPAGATION_HOST_TO_CONTAINER, "master:3", "rslave", "rslave"),
        (api.PROPAGATION_HOST_TO_CONTAINER, "shared:1", "rslave", "rslave"),
        (api.PROPAGATION_BIDIRECTIONAL, "shared:1", "rshared", "rshared"),
        (cast(api.MountPropagation, 42), "", "rprivate", None),  # unknown: containerd falls back to private
    ],
)
def test_propagation(propagation: api.MountPropagation, optional: str, flag: str, rootfs: str | None) -> None:
    looked: list[str] = []

    def lookup(path: str) -> tuple[str, str]:
        looked.append(path)
        return "/", optional

    spec = _with_mount(
        api.Mount(container_path="/data", host_path="/srv/data", propagation=propagation), lookup_mount=lookup
    )
    assert mount_at(spec, "/data")["options"] == ["rbind", flag, "rw"]
    assert spec["linux"].get("rootfsPropagation") == rootfs
    assert looked == ([] if flag == "rprivate" else ["/srv/data"])


@pytest.mark.parametrize(
    ("propagation", "optional"),
    [(api.PROPAGATION_BIDIRECTIONAL, "master:3"), (api.PROPAGATION_HOST_TO_CONTAINER, "")],
)
def test_propagation_needs_a_shared_source(propagation: api.MountPropagation, optional: str) -> None:
    with pytest.raises(FailedPrecondition, match="not a shared"):
        _with_mount(
            api.Mount(container_path="/data", host_path="/srv", propagation=propagation),
            lookup_mount=lambda _: ("/", optional),
        )


def test_rshared_wins_over_rslave_for_the_rootfs() -> None:
    config = container_config()
    config.mounts.append(api.Mount(container_path="/a", host_path="/a", propagation=api.PROPAGATION_BIDIRECTIONAL))
    config.mounts.append(api.Mount(container_path="/b", host_path="/b", propagation=api.PROPAGATION_HOST_TO_CONTAINER))
    assert build(config)["linux"]["rootfsPropagation"] == "rshared"


def test_recursive_read_only() -> None:
    rro = api.Mount(container_path="/data", host_path="/srv", readonly=True, recursive_read_only=True)
    assert mount_at(_with_mount(rro, recursive_read_only_mounts=True), "/data")["options"] == [
        "rbind",
        "rprivate",
        "rro",
    ]
    with pytest.raises(FailedPrecondition, match="recursive read-only"):
        _with_mount(rro)
    rw = api.Mount(container_path="/data", host_path="/srv", recursive_read_only=True)
    with pytest.raises(InvalidArgument, match="conflicts with RW"):
        _with_mount(rw, recursive_read_only_mounts=True)
    slave = api.Mount(
        container_path="/data",
        host_path="/srv",
        readonly=True,
        recursive_read_only=True,
        propagation=api.PROPAGATION_HOST_TO_CONTAINER,
    )
    with pytest.raises(InvalidArgument, match="private propagation"):
        _with_mount(slave, recursive_read_only_mounts=True)


def test_relative_container_path_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="absolute"):
        _with_mount(api.Mount(container_path="data", host_path="/srv"))


def test_unmounted_image_volume_is_unimplemented() -> None:
    with pytest.raises(Unimplemented):
        _with_mount(api.Mount(container_path="/data", image=api.ImageSpec(image="busybox")))


def test_id_mapped_mount() -> None:
    mount = api.Mount(container_path="/data", host_path="/srv")
    mount.uidMappings.append(api.IDMapping(host_id=100000, container_id=0, length=65536))
    entry = mount_at(_with_mount(mount), "/data")
    assert entry["uidMappings"] == [{"containerID": 0, "hostID": 100000, "size": 65536}] and "gidMappings" not in entry


def test_host_paths_go_through_the_hook() -> None:
    spec = _with_mount(
        api.Mount(container_path="/data", host_path="/srv/link"), prepare_host_path=lambda p: p + "-real"
    )
    assert mount_at(spec, "/data")["source"] == "/srv/link-real"


def test_pod_files() -> None:
    spec = build()
    for destination, source in (
        ("/etc/hostname", FILES.hostname),
        ("/etc/hosts", FILES.hosts),
        ("/etc/resolv.conf", FILES.resolv_conf),
        ("/dev/shm", FILES.shm),
    ):
        assert mount_at(spec, destination) == {
            "destination": destination,
            "type": "bind",
            "source": source,
            "options": ["rbind", "rprivate", "rw"],
        }


def test_pod_files_follow_readonly_rootfs_but_shm_does_not() -> None:
    config = container_config()
    config.linux.security_context.readonly_rootfs = True
    spec = build(config)
    assert mount_at(spec, "/etc/hosts")["options"][-1] == "ro"
    assert mount_at(spec, "/dev/shm")["options"][-1] == "rw"


def test_pod_files_not_prepared_or_mounted_by_kubelet_are_left_out() -> None:
    config = container_config()
    config.mounts.append(api.Mount(container_path="/etc/hosts", host_path="/kubelet/etc-hosts"))
    spec = build(config, files=SandboxFiles(shm="/run/shm"))
    assert mount_at(spec, "/etc/hosts")["source"] == "/kubelet/etc-hosts"
    assert not any(m["destination"] in ("/etc/hostname", "/etc/resolv.conf") for m in spec["mounts"])


def test_host_ipc_shares_the_hosts_shm() -> None:
    config = container_config()
    config.linux.security_context.namespace_options.ipc = api.NODE
    assert mount_at(build(config), "/dev/shm")["source"] == "/dev/shm"


def test_kubelet_mount_replaces_a_default_mount() -> None:
    # containerd's TestContainerSpecWithExtraMounts: /sys from kubelet replaces sysfs.
    spec = _with_mount(api.Mount(container_path="/sys", host_path="/test-sys-extra"))
    assert mount_at(spec, "/sys") == {
        "destination": "/sys",
        "type": "bind",
        "source": "/test-sys-extra",
        "options": ["rbind", "rprivate", "rw"],
    }


def test_dev_mount_replaces_everything_below_dev() -> None:
    spec = _with_mount(api.Mount(container_path="/dev", host_path="/dev"))
    assert [m["destination"] for m in spec["mounts"] if m["destination"].startswith("/dev")] == ["/dev", "/dev/shm"]
    assert mount_at(spec, "/dev/shm")["type"] == "bind"


def test_mounts_are_ordered_by_depth() -> None:
    config = container_config()
    config.ClearField("mounts")
    for path in ("/a/b/c", "/a", "/x/y", "/b"):
        config.mounts.append(api.Mount(container_path=path, host_path="/h" + path))
    binds = [m["destination"] for m in build(config, files=SandboxFiles())["mounts"] if m["type"] == "bind"]
    assert binds == ["/a", "/b", "/x/y", "/a/b/c"]


def test_cgroup_mount() -> None:
    assert mount_at(build(), "/sys/fs/cgroup") == {
        "destination": "/sys/fs/cgroup",
        "type": "cgroup",
        "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
    }
    writable = build(
        opts=options(cgroup_writable=True, cgroup2_vfs_options=("rw", "nsdelegate", "memory_recursiveprot"))
    )
    assert mount_at(writable, "/sys/fs/cgroup")["options"] == [
        "nosuid",
        "noexec",
        "nodev",
        "relatime",
        "rw",
        "nsdelegate",
        "memory_recursiveprot",
    ]
    # With its own cgroup namespace (cgroup v2) the container has a superblock of its own.
    v2 = build(opts=options(cgroup_v2=True, cgroup2_vfs_options=("nsdelegate",)))
    assert "nsdelegate" not in mount_at(v2, "/sys/fs/cgroup")["options"]


def test_image_volumes() -> None:
    image = ImageConfig(entrypoint=IMAGE.entrypoint, volumes=("/data", "cache", "/container-path-1"))
    spec = build(image=image, container_root_dir="/var/lib/cri/containers/test-id")
    data, cache = mount_at(spec, "/data"), mount_at(spec, "/cache")
    assert data["source"].startswith("/var/lib/cri/containers/test-id/volumes/")
    assert data["source"] != cache["source"] and data["options"] == ["rbind", "rprivate", "rw"]
    assert mount_at(spec, "/container-path-1")["source"] == "/host-path-1"  # kubelet's mount wins
    assert build(image=image, container_root_dir="/var/lib/cri/containers/test-id") == spec  # deterministic
    ignored = build(image=image, container_root_dir="/c", opts=options(ignore_image_defined_volumes=True))
    assert not any(m["destination"] == "/data" for m in ignored["mounts"])
    assert not any(m["destination"] == "/data" for m in build(image=image)["mounts"])  # no root dir given
