"""Container flags shared by ``containers create`` and ``run``, and the OCI spec they produce.

The spec starts from containerd's default (:func:`pycontainerd.oci.spec.default_spec`), takes the
image config (entrypoint and command, environment, working directory, user) as ``ctr`` does with
``WithImageConfig``, then each flag changes it the way the matching ``oci.With...`` option does.
"""

from __future__ import annotations

import json
import os
import signal
from typing import TYPE_CHECKING, Any

from pycontainerd.cli._app import UsageError, parse_labels
from pycontainerd.cli.snapshots import snapshotter_flag
from pycontainerd.oci import spec as oci

if TYPE_CHECKING:
    import argparse

    from pycontainerd.client.images import ImageConfig

DEFAULT_RUNTIME = "io.containerd.runc.v2"
STOP_SIGNAL_LABEL = "io.containerd.image.config.stop-signal"
UID_MAPPING_LABEL = "containerd.io/snapshot/uidmapping"
GID_MAPPING_LABEL = "containerd.io/snapshot/gidmapping"
CFS_PERIOD = 100_000


def add_container_flags(p: argparse.ArgumentParser) -> None:
    """The flags that shape a new container (its spec, snapshot, runtime and labels)."""
    snapshotter_flag(p)
    p.add_argument("--snapshotter-label", action="append", default=[], metavar="KEY=VALUE", help="label the snapshot")
    p.add_argument("--runtime", default=DEFAULT_RUNTIME, help=f"runtime name (default {DEFAULT_RUNTIME})")
    p.add_argument("--platform", default="", help="use the image's manifest for this platform (default: this host)")
    p.add_argument("-c", "--config", default="", help="a complete OCI spec (JSON file) instead of the generated one")
    p.add_argument("--rootfs", action="store_true", help="IMAGE is a directory used as the root (no snapshot)")
    p.add_argument("-t", "--tty", action="store_true", help="give the process a terminal")
    p.add_argument("--cwd", default="", help="working directory of the process")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="environment variable (repeatable)")
    p.add_argument("--env-file", default="", help="file of KEY=VALUE lines to add to the environment")
    p.add_argument("-u", "--user", default="", help="UID[:GID] to run as (default: the image's user)")
    p.add_argument("--hostname", default="", help="hostname inside the container")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="container label (repeatable)")
    p.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE", help="OCI annotation")
    p.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="SPEC",
        help="extra mount, e.g. type=bind,src=/tmp,dst=/host,options=rbind:ro (repeatable)",
    )
    p.add_argument("--net-host", action="store_true", help="share the host's network (and /etc/hosts, resolv.conf)")
    p.add_argument(
        "--with-ns",
        action="append",
        default=[],
        metavar="TYPE:PATH",
        help="join a namespace, e.g. network:/run/netns/x",
    )
    p.add_argument("--privileged", action="store_true", help="every capability, every device, no masked paths")
    p.add_argument("--read-only", action="store_true", help="mount the root filesystem read-only")
    p.add_argument("--allow-new-privs", action="store_true", help="allow setuid binaries to gain privileges")
    p.add_argument("--cap-add", action="append", default=[], metavar="CAP", help="add a capability (CAP_...)")
    p.add_argument("--cap-drop", action="append", default=[], metavar="CAP", help="drop a capability (CAP_...)")
    p.add_argument("--cpus", type=float, default=0.0, help="CPU limit in CPUs (CFS quota), e.g. 0.5")
    p.add_argument("--cpu-shares", type=int, default=0, help="relative CPU weight (default 1024)")
    p.add_argument("--memory-limit", type=int, default=0, help="memory limit in bytes")
    p.add_argument(
        "--uidmap",
        action="append",
        default=[],
        metavar="CONTAINER:HOST:LENGTH",
        help="run in a user namespace with this UID mapping (repeatable)",
    )
    p.add_argument(
        "--gidmap",
        action="append",
        default=[],
        metavar="CONTAINER:HOST:LENGTH",
        help="GID mapping of the user namespace (default: as --uidmap)",
    )
    p.add_argument(
        "--remap-labels",
        action="store_true",
        help="leave the ID shift to the snapshotter (its remap-ids capability): no chown-remapped copy",
    )


def parse_idmap(text: str) -> dict[str, int]:
    """``container:host:length`` as an OCI ``LinuxIDMapping``."""
    try:
        container, host, size = (int(x) for x in text.split(":"))
    except ValueError as exc:
        raise UsageError(f"invalid ID mapping {text!r}: expected CONTAINER:HOST:LENGTH") from exc
    return {"containerID": container, "hostID": host, "size": size}


def parse_mount(text: str) -> dict[str, Any]:
    """``type=bind,src=/a,dst=/b,options=rbind:ro`` as an OCI mount."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise UsageError(f"invalid mount {text!r}: {part!r} is not KEY=VALUE")
        fields[key.strip()] = value
    kind = fields.get("type", "none")
    source = fields.get("src") or fields.get("source") or ""
    destination = fields.get("dst") or fields.get("destination") or fields.get("target") or ""
    if not destination:
        raise UsageError(f"invalid mount {text!r}: dst= is required")
    options = [o for o in fields.get("options", "").split(":") if o]
    if kind == "bind" and not any(o in ("bind", "rbind") for o in options):
        options.append("rbind")
    return {"destination": destination, "type": kind, "source": source, "options": options}


def parse_signal(text: str) -> int:
    """``SIGTERM``, ``TERM`` or ``15`` as a signal number."""
    if text.isdigit():
        return int(text)
    name = text.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(signal.Signals[name])
    except KeyError as exc:
        raise UsageError(f"unknown signal {text!r}") from exc


def _env_file(path: str) -> list[str]:
    with open(path) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def _merge_env(base: list[str], extra: list[str]) -> list[str]:
    """``extra`` overrides variables of ``base`` with the same name, as WithEnv does."""
    names = {e.partition("=")[0] for e in extra}
    return [e for e in base if e.partition("=")[0] not in names] + extra


def _all_caps() -> list[str]:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except OSError:
        last = 40
    names = {
        0: "CHOWN", 1: "DAC_OVERRIDE", 2: "DAC_READ_SEARCH", 3: "FOWNER", 4: "FSETID", 5: "KILL", 6: "SETGID",
        7: "SETUID", 8: "SETPCAP", 9: "LINUX_IMMUTABLE", 10: "NET_BIND_SERVICE", 11: "NET_BROADCAST",
        12: "NET_ADMIN", 13: "NET_RAW", 14: "IPC_LOCK", 15: "IPC_OWNER", 16: "SYS_MODULE", 17: "SYS_RAWIO",
        18: "SYS_CHROOT", 19: "SYS_PTRACE", 20: "SYS_PACCT", 21: "SYS_ADMIN", 22: "SYS_BOOT", 23: "SYS_NICE",
        24: "SYS_RESOURCE", 25: "SYS_TIME", 26: "SYS_TTY_CONFIG", 27: "MKNOD", 28: "LEASE", 29: "AUDIT_WRITE",
        30: "AUDIT_CONTROL", 31: "SETFCAP", 32: "MAC_OVERRIDE", 33: "MAC_ADMIN", 34: "SYSLOG", 35: "WAKE_ALARM",
        36: "BLOCK_SUSPEND", 37: "AUDIT_READ", 38: "PERFMON", 39: "BPF", 40: "CHECKPOINT_RESTORE",
    }  # fmt: skip
    return [f"CAP_{names[i]}" for i in range(min(last, 40) + 1)]


def _apply_user(process: dict[str, Any], user: str) -> None:
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise UsageError(f"user {user!r}: only numeric UID[:GID] is supported")
    process["user"] = {"uid": int(uid), "gid": int(gid or 0)}


def build_spec(
    args: argparse.Namespace,
    namespace: str,
    container_id: str,
    command: list[str],
    image: ImageConfig | None,
) -> dict[str, Any]:
    """The OCI spec of a new container from the command line (and the image config)."""
    if args.config:
        with open(args.config) as f:
            loaded: dict[str, Any] = json.load(f)
        return loaded
    spec = oci.default_spec(namespace, container_id)
    process = spec["process"]
    config = image.config if image is not None else {}
    process["args"] = command or [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    if not process["args"]:
        raise UsageError("no command given and the image has neither an entrypoint nor a command")
    process["env"] = _merge_env(process["env"], list(config.get("Env") or []))
    process["cwd"] = args.cwd or config.get("WorkingDir") or "/"
    if config.get("User") and not args.user:
        user = str(config["User"])
        if all(part.isdigit() for part in user.split(":")):
            _apply_user(process, user)
    if args.user:
        _apply_user(process, args.user)
    extra_env = (_env_file(args.env_file) if args.env_file else []) + list(args.env)
    if args.tty:
        process["terminal"] = True
        extra_env = ["TERM=xterm", *extra_env]
    process["env"] = _merge_env(process["env"], extra_env)
    if args.rootfs:
        spec["root"]["path"] = os.path.abspath(args.image)
    if args.hostname:
        oci.with_hostname(spec, args.hostname)
    if args.read_only:
        oci.with_readonly_rootfs(spec)
    if args.allow_new_privs:
        process["noNewPrivileges"] = False
    if args.annotation:
        spec["annotations"] = parse_labels(args.annotation)
    spec["mounts"].extend(parse_mount(m) for m in args.mount)
    if args.net_host:
        oci.without_namespace(spec, "network")
        for path in ("/etc/hosts", "/etc/resolv.conf"):
            spec["mounts"].append({"destination": path, "type": "bind", "source": path, "options": ["rbind", "ro"]})
    for item in args.with_ns:
        kind, _, path = item.partition(":")
        try:
            oci.with_namespace(spec, kind, path)
        except ValueError as exc:
            raise UsageError(f"--with-ns {item!r}: {exc}") from exc
    caps = process["capabilities"]
    if args.privileged:
        for key in ("bounding", "permitted", "effective"):
            caps[key] = _all_caps()
        spec["linux"]["maskedPaths"] = []
        spec["linux"]["readonlyPaths"] = []
        spec["linux"]["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
        spec["mounts"] = [
            {**m, "options": [o for o in m["options"] if o != "ro"]} if m["destination"] == "/sys" else m
            for m in spec["mounts"]
        ]
    for cap in args.cap_add:
        name = cap.upper() if cap.upper().startswith("CAP_") else f"CAP_{cap.upper()}"
        for key in ("bounding", "permitted", "effective"):
            if name not in caps[key]:
                caps[key].append(name)
    for cap in args.cap_drop:
        name = cap.upper() if cap.upper().startswith("CAP_") else f"CAP_{cap.upper()}"
        for key in ("bounding", "permitted", "effective"):
            caps[key] = [c for c in caps[key] if c != name]
    resources = spec["linux"]["resources"]
    if args.memory_limit:
        resources.setdefault("memory", {})["limit"] = args.memory_limit
    if args.cpus:
        resources.setdefault("cpu", {}).update({"quota": int(args.cpus * CFS_PERIOD), "period": CFS_PERIOD})
    if args.cpu_shares:
        resources.setdefault("cpu", {})["shares"] = args.cpu_shares
    uids = [parse_idmap(m) for m in args.uidmap]
    gids = [parse_idmap(m) for m in args.gidmap] or list(uids)
    if uids:
        oci.with_namespace(spec, "user")
        spec["linux"]["uidMappings"] = uids
        spec["linux"]["gidMappings"] = gids
        # A new user namespace cannot mount the host's sysfs unless the network is its own too.
        if args.net_host:
            spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/sys"]
    return spec


def snapshot_labels(args: argparse.Namespace) -> dict[str, str]:
    """Labels of the container's snapshot: ``--snapshotter-label`` plus the ID mappings, which an
    idmap-capable snapshotter uses to present the layers owned by the mapped IDs."""
    labels = parse_labels(args.snapshotter_label)
    uids = [parse_idmap(m) for m in args.uidmap]
    gids = [parse_idmap(m) for m in args.gidmap] or uids
    if uids:
        labels[UID_MAPPING_LABEL] = ",".join(f"{m['containerID']}:{m['hostID']}:{m['size']}" for m in uids)
        labels[GID_MAPPING_LABEL] = ",".join(f"{m['containerID']}:{m['hostID']}:{m['size']}" for m in gids)
    return labels
