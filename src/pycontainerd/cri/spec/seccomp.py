"""Seccomp: which profile a pod or container gets, and the RuntimeDefault profile itself.

Kubelet names a profile in ``security_context.seccomp`` (a ``SecurityProfile``) or, older, in
the deprecated ``seccomp_profile_path`` string; with neither, the CRI config's
``unset_seccomp_profile`` applies, and if that is empty too the process runs unconfined.
Privileged processes are always unconfined.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri.spec import seccomp_default as data
from pycontainerd.errdefs import FailedPrecondition, InvalidArgument, NotFound

if TYPE_CHECKING:
    from collections.abc import Sequence

RUNTIME_DEFAULT = int(api.SecurityProfile.RuntimeDefault)
UNCONFINED = int(api.SecurityProfile.Unconfined)
LOCALHOST = int(api.SecurityProfile.Localhost)

LOCALHOST_PREFIX = "localhost/"

# The fields of an OCI LinuxSeccomp; others in a profile file (Docker's archMap...) are dropped.
_PROFILE_KEYS = ("defaultAction", "defaultErrnoRet", "architectures", "flags", "listenerPath", "listenerMetadata")


def profile_from_path(path: str) -> tuple[int, str]:
    """A deprecated profile string as ``(profile type, localhost ref)``.

    ``runtime/default``, ``docker/default`` and "" mean RuntimeDefault, ``unconfined`` means
    Unconfined, ``localhost/<path>`` a profile file.

    Raises:
        InvalidArgument: any other string.
    """
    if path in ("runtime/default", "docker/default", ""):
        return RUNTIME_DEFAULT, ""
    if path == "unconfined":
        return UNCONFINED, ""
    if not path.startswith(LOCALHOST_PREFIX):
        raise InvalidArgument(f'invalid profile "{path}"')
    return LOCALHOST, path.removeprefix(LOCALHOST_PREFIX)


def requested_profile(security_context: Any, unset_profile: str) -> tuple[int, str] | None:
    """The seccomp profile a security context asks for, as ``(profile type, localhost ref)``.

    Args:
        security_context: a ``LinuxContainerSecurityContext`` or ``LinuxSandboxSecurityContext``.
        unset_profile: the CRI config's ``unset_seccomp_profile``.

    Returns:
        None when nothing names a profile.
    """
    if security_context.HasField("seccomp"):
        return int(security_context.seccomp.profile_type), str(security_context.seccomp.localhost_ref)
    path = str(security_context.seccomp_profile_path) or unset_profile
    return profile_from_path(path) if path else None


def load_profile(path: str) -> dict[str, Any]:
    """A Localhost profile: the OCI ``linux.seccomp`` object in the JSON file at ``path``.

    Raises:
        InvalidArgument: a relative path, or a file that is no JSON object.
        NotFound: no file at ``path``.
        FailedPrecondition: the file cannot be read.
    """
    if not os.path.isabs(path):
        raise InvalidArgument(f"seccomp profile {path!r}: the localhost profile path must be absolute")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise NotFound(f"cannot load seccomp profile {path!r}: no such file") from None
    except OSError as exc:
        raise FailedPrecondition(f"cannot load seccomp profile {path!r}: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"decoding seccomp profile {path!r} failed: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"decoding seccomp profile {path!r} failed: not a JSON object")
    profile = {key: doc[key] for key in (*_PROFILE_KEYS, "syscalls") if doc.get(key) not in (None, "", [], {})}
    if not isinstance(profile.get("defaultAction", ""), str):
        raise InvalidArgument(f"decoding seccomp profile {path!r} failed: defaultAction must be a string")
    return profile


def _allow(names: Sequence[str], *args: dict[str, int | str]) -> dict[str, Any]:
    rule: dict[str, Any] = {"names": list(names), "action": "SCMP_ACT_ALLOW"}
    if args:
        rule["args"] = list(args)
    return rule


def _arg(index: int, op: str, value: int) -> dict[str, int | str]:
    return {"index": index, "value": value, "op": op}


def default_profile(bounding: Sequence[str], *, arch: str, kernel_version: tuple[int, int]) -> dict[str, Any]:
    """containerd's RuntimeDefault profile for a process with the ``bounding`` capability set.

    Args:
        bounding: the process's bounding set; some capabilities unlock their syscalls.
        arch: the host machine (``os.uname().machine``).
        kernel_version: the host kernel's ``(major, minor)``.
    """
    goarch = data.GOARCH.get(arch, arch)
    rules = [_allow(data.ALLOWED)]
    rules += [_allow(["socket"], _arg(0, op, value)) for op, value in data.SOCKET_RULES]
    rules += [_allow(["personality"], _arg(0, "SCMP_CMP_EQ", value)) for value in data.PERSONALITIES]
    if kernel_version >= data.PTRACE_SINCE:
        rules.append(_allow(data.PTRACE_SYSCALLS))
    if goarch in data.ARCH_SYSCALLS:
        rules.append(_allow(data.ARCH_SYSCALLS[goarch]))
    for cap in bounding:
        if cap in data.CAPABILITY_SYSCALLS:
            rules.append(_allow(data.CAPABILITY_SYSCALLS[cap]))
    if "CAP_SYS_ADMIN" not in bounding:
        index = data.CLONE_FLAGS_ARG.get(goarch, 0)
        rules.append(
            _allow(["clone"], {**_arg(index, "SCMP_CMP_MASKED_EQ", data.CLONE_NAMESPACE_FLAGS), "valueTwo": 0})
        )
        # ENOSYS rather than EPERM, so that libcs fall back to clone(2), whose flags are checked.
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": data.ENOSYS})
    profile: dict[str, Any] = {"defaultAction": "SCMP_ACT_ERRNO"}
    if data.ARCHITECTURES.get(goarch):
        profile["architectures"] = list(data.ARCHITECTURES[goarch])
    profile["syscalls"] = rules
    return profile


def seccomp_for(
    requested: tuple[int, str] | None,
    *,
    privileged: bool,
    enabled: bool,
    bounding: Sequence[str],
    arch: str,
    kernel_version: tuple[int, int],
) -> dict[str, Any] | None:
    """The ``linux.seccomp`` object for a requested profile, or None for unconfined.

    Raises:
        FailedPrecondition: a profile other than Unconfined on a host without seccomp.
        InvalidArgument: a localhost ref on a non-Localhost profile, or an unknown profile type.
    """
    if privileged:
        return None
    if not enabled:
        if requested is not None and requested[0] != UNCONFINED:
            raise FailedPrecondition("seccomp is not supported")
        return None
    if requested is None:
        return None
    kind, ref = requested
    if kind != LOCALHOST and ref:
        raise InvalidArgument("seccomp config invalid LocalhostRef must only be set if ProfileType is Localhost")
    if kind == UNCONFINED:
        return None
    if kind == RUNTIME_DEFAULT:
        return default_profile(bounding, arch=arch, kernel_version=kernel_version)
    if kind == LOCALHOST:
        return load_profile(ref.removeprefix(LOCALHOST_PREFIX))
    raise InvalidArgument(f"seccomp unknown ProfileType {kind}")
