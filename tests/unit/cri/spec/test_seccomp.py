"""Seccomp: profile selection, Localhost files, and the RuntimeDefault profile checked against libseccomp and runc."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri.spec import seccomp_default as data
from pycontainerd.cri.spec.seccomp import default_profile
from pycontainerd.errdefs import FailedPrecondition, InvalidArgument, NotFound
from pycontainerd.oci.spec import DEFAULT_CAPS
from tests.unit.cri.spec.helpers import build, build_sandbox, container_config, options, sandbox_config

RUNTIME_DEFAULT = api.SecurityProfile.RuntimeDefault
CLONE_NS_MASK = 0x7E020000  # CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP

# Syscalls in the profile that libseccomp learnt late (containerd's comments), with the release.
NEWER_SYSCALLS = {
    **dict.fromkeys(
        ("cachestat", "fchmodat2", "futex_requeue", "futex_wait", "futex_wake", "map_shadow_stack"), (2, 5, 5)
    ),
    **dict.fromkeys(
        (
            "getxattrat",
            "listmount",
            "listxattrat",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mseal",
            "removexattrat",
            "setxattrat",
            "statmount",
            "uretprobe",
            "riscv_hwprobe",
        ),
        (2, 6, 0),
    ),
}


def _profile(sc_change: Any = None, *, opts: Any = None, privileged: bool = False) -> dict[str, Any] | None:
    config, pod = container_config(), sandbox_config()
    sc = config.linux.security_context
    if sc_change is not None:
        sc_change(sc)
    sc.privileged = pod.linux.security_context.privileged = privileged
    profile: dict[str, Any] | None = build(config, pod, opts=opts or options())["linux"].get("seccomp")
    return profile


def _runtime_default(sc: api.LinuxContainerSecurityContext) -> None:
    sc.seccomp.profile_type = RUNTIME_DEFAULT


def _rules_for(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [rule for rule in profile["syscalls"] if name in rule["names"]]


def test_runtime_default_shape() -> None:
    profile = _profile(_runtime_default)
    assert profile is not None
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and "defaultErrnoRet" not in profile  # EPERM
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    first = profile["syscalls"][0]
    assert first["action"] == "SCMP_ACT_ALLOW" and "args" not in first and len(first["names"]) == 363
    assert {"read", "write", "execve", "arch_prctl", "ptrace", "chroot"} <= {
        n for r in profile["syscalls"] for n in r["names"]
    }
    # AF_ALG (38) and AF_VSOCK (40) fall through the three socket ranges.
    sockets = [(r["args"][0]["op"], r["args"][0]["value"]) for r in _rules_for(profile, "socket")]
    assert sockets == [("SCMP_CMP_LT", 38), ("SCMP_CMP_EQ", 39), ("SCMP_CMP_GT", 40)]
    assert [r["args"][0]["value"] for r in _rules_for(profile, "personality")] == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]


def test_without_sys_admin_clone_cannot_make_namespaces() -> None:
    profile = _profile(_runtime_default)
    assert profile is not None
    assert not _rules_for(profile, "mount") and not _rules_for(profile, "unshare")
    (clone,) = _rules_for(profile, "clone")
    assert clone["args"] == [{"index": 0, "value": CLONE_NS_MASK, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]
    (clone3,) = _rules_for(profile, "clone3")
    assert clone3 == {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}  # ENOSYS


def test_capabilities_unlock_syscalls() -> None:
    def admin(sc: api.LinuxContainerSecurityContext) -> None:
        _runtime_default(sc)
        sc.capabilities.add_capabilities.extend(["SYS_ADMIN", "SYS_PTRACE"])
        sc.capabilities.drop_capabilities.append("SYS_CHROOT")

    profile = _profile(admin)
    assert profile is not None
    assert _rules_for(profile, "mount")[0]["names"] == list(data.CAPABILITY_SYSCALLS["CAP_SYS_ADMIN"])
    assert any("kcmp" in r["names"] for r in profile["syscalls"])
    assert not _rules_for(profile, "chroot")
    assert all("args" not in r for r in _rules_for(profile, "clone"))  # unfiltered clone
    assert not any(r["action"] == "SCMP_ACT_ERRNO" for r in profile["syscalls"])


def test_arch_and_kernel_variants() -> None:
    arm = default_profile(DEFAULT_CAPS, arch="aarch64", kernel_version=(4, 4))
    assert arm["architectures"] == ["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"]
    names = {n for r in arm["syscalls"] for n in r["names"]}
    assert "set_tls" in names and "arch_prctl" not in names and "ptrace" not in names  # ptrace from 4.8 on
    s390 = default_profile(DEFAULT_CAPS, arch="s390x", kernel_version=(6, 1))
    assert _rules_for(s390, "clone")[0]["args"][0]["index"] == 1  # s390 swaps clone's first arguments
    assert "architectures" not in default_profile(DEFAULT_CAPS, arch="ppc64le", kernel_version=(6, 1))


def _libseccomp() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp")
    if name is None:
        pytest.skip("libseccomp is not installed")
    return ctypes.CDLL(name)


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


def test_names_are_known_to_libseccomp() -> None:
    lib = _libseccomp()
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    version = lib.seccomp_version().contents
    installed = (version.major, version.minor, version.micro)
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    for arch in ("x86_64", "aarch64", "s390x", "riscv64"):
        profile = default_profile(list(data.CAPABILITY_SYSCALLS), arch=arch, kernel_version=(6, 1))
        for scmp_arch in profile["architectures"]:
            assert lib.seccomp_arch_resolve_name(scmp_arch.removeprefix("SCMP_ARCH_").lower().encode()) != 0, scmp_arch
        for rule in profile["syscalls"]:
            for name in rule["names"]:
                if lib.seccomp_syscall_resolve_name(name.encode()) == -1:  # __NR_SCMP_ERROR
                    assert NEWER_SYSCALLS.get(name, (0, 0, 0)) > installed, f"{name} unknown to libseccomp {installed}"


def test_actions_ops_and_arches_are_known_to_runc() -> None:
    runc = shutil.which("runc")
    if runc is None:
        pytest.skip("runc is not installed")
    features = json.loads(subprocess.run([runc, "features"], capture_output=True, check=True, timeout=30).stdout)
    known = features["linux"]["seccomp"]
    profile = _profile(_runtime_default)
    assert profile is not None
    assert {profile["defaultAction"]} | {r["action"] for r in profile["syscalls"]} <= set(known["actions"])
    assert {a["op"] for r in profile["syscalls"] for a in r.get("args", [])} <= set(known["operators"])
    assert set(profile["architectures"]) <= set(known["archs"])


def test_localhost_profile(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(
        json.dumps(
            {"defaultAction": "SCMP_ACT_LOG", "archMap": [], "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW"}]}
        )
    )

    def localhost(ref: str) -> Any:
        def change(sc: api.LinuxContainerSecurityContext) -> None:
            sc.seccomp.profile_type = api.SecurityProfile.Localhost
            sc.seccomp.localhost_ref = ref

        return change

    # Fields outside the OCI object (Docker's archMap) are dropped, as Go's decoder does.
    assert _profile(localhost(str(path))) == {
        "defaultAction": "SCMP_ACT_LOG",
        "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW"}],
    }
    assert _profile(localhost(f"localhost/{path}")) is not None
    with pytest.raises(NotFound):
        _profile(localhost(str(tmp_path / "missing.json")))
    with pytest.raises(InvalidArgument, match="absolute"):
        _profile(localhost("profile.json"))
    path.write_text("[1, 2]")
    with pytest.raises(InvalidArgument):
        _profile(localhost(str(path)))
    path.write_text("{not json")
    with pytest.raises(InvalidArgument):
        _profile(localhost(str(path)))


@pytest.mark.parametrize(
    ("path", "unset", "confined"),
    [
        ("runtime/default", "", True),
        ("docker/default", "", True),
        ("unconfined", "runtime/default", False),
        ("", "runtime/default", True),  # the config's default applies when kubelet names nothing
        ("", "", False),
        ("", "unconfined", False),
    ],
)
def test_deprecated_profile_path_and_unset_default(path: str, unset: str, confined: bool) -> None:
    def change(sc: api.LinuxContainerSecurityContext) -> None:
        sc.seccomp_profile_path = path

    assert (_profile(change, opts=options(unset_seccomp_profile=unset)) is not None) is confined


def test_profile_field_wins_over_the_path() -> None:
    def change(sc: api.LinuxContainerSecurityContext) -> None:
        sc.seccomp.profile_type = api.SecurityProfile.Unconfined
        sc.seccomp_profile_path = "runtime/default"

    assert _profile(change) is None


def test_profile_errors() -> None:
    def bad_path(sc: api.LinuxContainerSecurityContext) -> None:
        sc.seccomp_profile_path = "my-profile"

    def ref_without_localhost(sc: api.LinuxContainerSecurityContext) -> None:
        sc.seccomp.profile_type = RUNTIME_DEFAULT
        sc.seccomp.localhost_ref = "/x.json"

    with pytest.raises(InvalidArgument, match="invalid profile"):
        _profile(bad_path)
    with pytest.raises(InvalidArgument, match="LocalhostRef"):
        _profile(ref_without_localhost)


def test_privileged_is_unconfined() -> None:
    assert _profile(_runtime_default, privileged=True) is None


def test_host_without_seccomp() -> None:
    with pytest.raises(FailedPrecondition, match="seccomp is not supported"):
        _profile(_runtime_default, opts=options(seccomp_enabled=False))

    def unconfined(sc: api.LinuxContainerSecurityContext) -> None:
        sc.seccomp.profile_type = api.SecurityProfile.Unconfined

    assert _profile(unconfined, opts=options(seccomp_enabled=False)) is None


def test_sandbox_seccomp_follows_the_pod_context() -> None:
    assert "seccomp" not in build_sandbox()["linux"]  # nothing asked, no config default
    pod = sandbox_config()
    pod.linux.security_context.seccomp.profile_type = RUNTIME_DEFAULT
    profile = build_sandbox(pod)["linux"]["seccomp"]
    assert _rules_for(profile, "chroot") and _rules_for(profile, "clone")[0]["args"]
    pod.linux.security_context.privileged = True
    assert "seccomp" not in build_sandbox(pod)["linux"]
