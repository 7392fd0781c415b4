"""A minimal busybox root filesystem and OCI bundle for runtime tests (no image needed)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "echo", "sleep", "cat", "ls", "true", "false", "id", "env", "kill", "ps", "mkdir", "touch")


def make_rootfs(rootfs: Path) -> Path:
    """A busybox-static root filesystem at ``rootfs``."""
    (rootfs / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in APPLETS:
        link = rootfs / "bin" / applet
        if not link.exists():
            os.symlink("busybox", link)
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        (rootfs / d).mkdir(exist_ok=True)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    return rootfs


def oci_spec(args: list[str], *, terminal: bool = False, rootfs: str = "rootfs") -> dict[str, object]:
    """A small OCI runtime spec like `ctr run` produces, enough for runc."""
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                k: ["CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID", "CAP_NET_BIND_SERVICE"]
                for k in ("bounding", "effective", "permitted")
            },
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": False},
        "hostname": "pycontainerd-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
        },
    }


def make_bundle(bundle: Path, args: list[str]) -> Path:
    """An OCI bundle (config.json + rootfs) running ``args``."""
    make_rootfs(bundle / "rootfs")
    (bundle / "config.json").write_text(json.dumps(oci_spec(args)))
    return bundle
