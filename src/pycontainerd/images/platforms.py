"""Platforms (``os/arch[/variant]``) and matching an image's platforms to the host."""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass

from pycontainerd.errdefs import InvalidArgument

_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armhf": "arm",
    "armel": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


@dataclass(frozen=True, slots=True)
class Platform:
    """An OCI platform."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def normalize_arch(arch: str, variant: str = "") -> tuple[str, str]:
    """Go-style architecture names, with containerd's variant defaults (arm64 -> v8)."""
    arch = _ARCH.get(arch.lower(), arch.lower())
    if arch == "arm64" and variant in ("", "8"):
        variant = "v8"
    if arch == "arm" and variant in ("", "7"):
        variant = "v7"
    if arch == "amd64" and variant == "v1":
        variant = ""
    return arch, variant


def parse(spec: str) -> Platform:
    """``linux``, ``linux/arm64``, ``linux/arm/v7`` or ``arm64`` (os defaults to linux)."""
    parts = [p for p in spec.strip().split("/") if p]
    if not parts or len(parts) > 3:
        raise InvalidArgument(f"invalid platform {spec!r}: expected os/arch[/variant]")
    if len(parts) == 1:
        if parts[0] in ("linux", "windows", "darwin", "freebsd"):
            return host_platform() if parts[0] == "linux" else Platform(parts[0], host_platform().architecture)
        arch, variant = normalize_arch(parts[0])
        return Platform("linux", arch, variant)
    arch, variant = normalize_arch(parts[1], parts[2] if len(parts) == 3 else "")
    return Platform(parts[0].lower(), arch, variant)


def host_platform() -> Platform:
    """The platform of this machine."""
    arch, variant = normalize_arch(_platform.machine())
    return Platform("linux", arch, variant)


def matches(want: Platform, have: dict[str, str] | Platform | None) -> bool:
    """Whether an image's platform (a descriptor's ``platform`` object) fits ``want``."""
    if have is None:
        return True  # no platform given: assume it fits, as containerd does for single manifests
    if isinstance(have, dict):
        fields = [have.get(key) or "" for key in ("os", "architecture", "variant")]
        if not all(isinstance(f, str) for f in fields):
            raise InvalidArgument(f"invalid platform {have!r}: os, architecture and variant must be strings")
        arch, variant = normalize_arch(fields[1], fields[2])
        have = Platform(fields[0].lower(), arch, variant)
    if (have.os, have.architecture) != (want.os, want.architecture):
        return False
    return not want.variant or not have.variant or have.variant == want.variant
