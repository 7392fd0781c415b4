"""Capabilities, privileged mode, masked paths and AppArmor."""

from __future__ import annotations

from typing import Any

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri.spec import KNOWN_CAPABILITIES
from pycontainerd.cri.spec.capabilities import cap_name, capabilities_from_mask
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.oci.spec import DEFAULT_CAPS, default_spec
from tests.unit.cri.spec.helpers import HOST_DEVICES, build, container_config, mount_at, options, sandbox_config

ALL = list(KNOWN_CAPABILITIES)


def _with_caps(add: tuple[str, ...] = (), drop: tuple[str, ...] = (), ambient: tuple[str, ...] = ()) -> dict[str, Any]:
    config = container_config()
    config.linux.security_context.capabilities.CopyFrom(
        api.Capability(add_capabilities=add, drop_capabilities=drop, add_ambient_capabilities=ambient)
    )
    caps: dict[str, Any] = build(config)["process"]["capabilities"]
    return caps


@pytest.mark.parametrize(
    ("add", "drop", "includes", "excludes"),
    [
        # containerd's TestContainerCapabilities table.
        (["SYS_ADMIN"], ["CHOWN"], ["CAP_SYS_ADMIN"], ["CAP_CHOWN"]),
        (["ALL"], [], ALL, []),
        ([], ["ALL"], [], ALL),
        (["ALL"], ["CHOWN"], [c for c in ALL if c != "CAP_CHOWN"], ["CAP_CHOWN"]),
        (["SYS_ADMIN"], ["ALL"], ["CAP_SYS_ADMIN"], [c for c in ALL if c != "CAP_SYS_ADMIN"]),
        (["all"], ["cap_chown"], [c for c in ALL if c != "CAP_CHOWN"], ["CAP_CHOWN"]),  # any case, either prefix
    ],
)
def test_add_and_drop(add: list[str], drop: list[str], includes: list[str], excludes: list[str]) -> None:
    caps = _with_caps(tuple(add), tuple(drop))
    for kind in ("bounding", "effective", "permitted"):
        held = caps.get(kind, [])
        assert set(includes) <= set(held)
        assert not set(excludes) & set(held)
    assert "inheritable" not in caps and "ambient" not in caps


def test_no_capabilities_message_keeps_the_defaults() -> None:
    assert build()["process"]["capabilities"] == {k: DEFAULT_CAPS for k in ("bounding", "permitted", "effective")}


def test_ambient_capabilities_are_raised() -> None:
    caps = _with_caps(ambient=("NET_ADMIN",))
    assert caps["ambient"] == caps["inheritable"] == ["CAP_NET_ADMIN"]
    assert "CAP_NET_ADMIN" in caps["permitted"]


def test_names() -> None:
    assert cap_name("sys_admin") == cap_name("CAP_SYS_ADMIN") == "CAP_SYS_ADMIN"
    assert len(KNOWN_CAPABILITIES) == 41 and KNOWN_CAPABILITIES[21] == "CAP_SYS_ADMIN"
    assert capabilities_from_mask(0x1FFFFFFFFFF) == KNOWN_CAPABILITIES
    assert capabilities_from_mask(1 << 21 | 1) == ("CAP_CHOWN", "CAP_SYS_ADMIN")


def _privileged(container: bool = True, sandbox: bool = True, **opts: Any) -> dict[str, Any]:
    config, pod = container_config(), sandbox_config()
    config.linux.security_context.privileged = container
    pod.linux.security_context.privileged = sandbox
    config.linux.security_context.seccomp.profile_type = api.SecurityProfile.RuntimeDefault
    config.linux.security_context.masked_paths.append("/proc/kcore")
    return build(config, pod, opts=options(all_capabilities=("CAP_CHOWN", "CAP_SYS_ADMIN"), **opts))


def test_privileged_lifts_confinement() -> None:
    spec = _privileged()
    caps = spec["process"]["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"] == ["CAP_CHOWN", "CAP_SYS_ADMIN"]
    linux = spec["linux"]
    assert "maskedPaths" not in linux and "readonlyPaths" not in linux and "seccomp" not in linux
    assert "rw" in mount_at(spec, "/sys")["options"] and "ro" not in mount_at(spec, "/sys")["options"]
    assert "rw" in mount_at(spec, "/sys/fs/cgroup")["options"]
    assert [d["path"] for d in linux["devices"]] == sorted(HOST_DEVICES)
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]


def test_unprivileged_mounts_sysfs_and_cgroupfs_read_only() -> None:
    spec = _privileged(container=False, sandbox=False)
    assert "ro" in mount_at(spec, "/sys")["options"] and "ro" in mount_at(spec, "/sys/fs/cgroup")["options"]
    assert spec["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]


@pytest.mark.parametrize(
    ("without", "all_allowed", "host_devices", "rule"),
    [
        (True, False, False, {"allow": False, "access": "rwm"}),
        (True, True, False, {"allow": True, "access": "rwm"}),
    ],
)
def test_privileged_without_host_devices(
    without: bool, all_allowed: bool, host_devices: bool, rule: dict[str, Any]
) -> None:
    spec = _privileged(
        privileged_without_host_devices=without, privileged_without_host_devices_all_devices_allowed=all_allowed
    )
    assert ("devices" in spec["linux"]) is host_devices
    assert spec["linux"]["resources"]["devices"] == [rule]


def test_privileged_container_needs_a_privileged_pod() -> None:
    with pytest.raises(InvalidArgument, match="privileged"):
        _privileged(container=True, sandbox=False)
    _privileged(container=False, sandbox=True)


DEFAULTS = default_spec("k8s.io", "x")["linux"]


@pytest.mark.parametrize(
    ("disable_proc_mount", "masked", "readonly", "expected_masked", "expected_readonly"),
    [
        # containerd's TestMaskedAndReadonlyPaths (unprivileged rows).
        (True, [], [], DEFAULTS["maskedPaths"], DEFAULTS["readonlyPaths"]),
        (False, [], [], None, None),
        (False, ["/proc"], ["/sys"], ["/proc"], ["/sys"]),
        (True, ["/proc"], ["/sys"], DEFAULTS["maskedPaths"], DEFAULTS["readonlyPaths"]),
    ],
)
def test_masked_and_readonly_paths(
    disable_proc_mount: bool, masked: list[str], readonly: list[str], expected_masked: Any, expected_readonly: Any
) -> None:
    config = container_config()
    config.linux.security_context.masked_paths.extend(masked)
    config.linux.security_context.readonly_paths.extend(readonly)
    linux = build(config, opts=options(disable_proc_mount=disable_proc_mount))["linux"]
    assert linux.get("maskedPaths") == expected_masked
    assert linux.get("readonlyPaths") == expected_readonly


def _apparmor(profile: api.SecurityProfile | None = None, old: str = "", privileged: bool = False) -> str | None:
    config, pod = container_config(), sandbox_config()
    sc = config.linux.security_context
    if profile is not None:
        sc.apparmor.CopyFrom(profile)
    sc.apparmor_profile = old
    sc.privileged = pod.linux.security_context.privileged = privileged
    value: str | None = build(config, pod, opts=options(disable_apparmor=False))["process"].get("apparmorProfile")
    return value


def test_apparmor_profiles() -> None:
    assert _apparmor() == "cri-containerd.apparmor.d"  # RuntimeDefault when nothing is asked
    assert _apparmor(privileged=True) is None
    assert _apparmor(api.SecurityProfile(profile_type=api.SecurityProfile.Unconfined)) is None
    local = api.SecurityProfile(profile_type=api.SecurityProfile.Localhost, localhost_ref="localhost/my-profile")
    assert _apparmor(local) == "my-profile"
    assert _apparmor(local, privileged=True) == "my-profile"  # set after privileged mode, as containerd does
    assert _apparmor(old="localhost/old") == "old"
    assert _apparmor(old="unconfined") is None


def test_apparmor_errors() -> None:
    with pytest.raises(InvalidArgument, match="LocalhostRef"):
        _apparmor(api.SecurityProfile(profile_type=api.SecurityProfile.RuntimeDefault, localhost_ref="x"))
    with pytest.raises(InvalidArgument):
        _apparmor(api.SecurityProfile(profile_type=api.SecurityProfile.Localhost))
    with pytest.raises(InvalidArgument, match="invalid profile"):
        _apparmor(old="my-profile")


def test_apparmor_disabled_ignores_requests() -> None:
    config = container_config()
    config.linux.security_context.apparmor.profile_type = api.SecurityProfile.Localhost
    config.linux.security_context.apparmor.localhost_ref = "p"
    assert "apparmorProfile" not in build(config)["process"]
