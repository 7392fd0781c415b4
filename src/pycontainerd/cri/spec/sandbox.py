"""The pause container's spec (RunPodSandbox) and the files a pod's containers share.

The pause process holds the pod's namespaces: it gets a new network namespace at the path CNI
set up (or the host's), new IPC, UTS and PID namespaces unless the pod shares the host's, the
pod's sysctls, and the pod-level security context.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri.spec import cri_annotations as ann
from pycontainerd.cri.spec import namespaces, process, resources, seccomp
from pycontainerd.cri.spec.container import base_spec
from pycontainerd.cri.spec.mounts import DEV_SHM, RESOLV_CONF
from pycontainerd.cri.spec.tidy import tidy
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.oci import spec as oci

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pycontainerd.cri.spec.images import ImageConfig
    from pycontainerd.cri.spec.options import SandboxFiles, SpecOptions

_FILE_OPTIONS = ("rbind", "ro", "nosuid", "nodev", "noexec")


def resolv_conf(dns: Any) -> str:
    """The /etc/resolv.conf text for a pod's ``DNSConfig``: search, nameserver and options lines.

    Empty when the config names nothing. Without a DNSConfig at all, containerd copies the
    node's /etc/resolv.conf instead; that is the caller's job.
    """
    text = ""
    if dns.searches:
        text += "search " + " ".join(dns.searches) + "\n"
    text += "".join(f"nameserver {server}\n" for server in dns.servers)
    if dns.options:
        text += "options " + " ".join(dns.options) + "\n"
    return text


def hosts_file(node_hosts: str | None) -> str:
    """The pod's /etc/hosts: containerd copies the node's file as it is.

    Args:
        node_hosts: the node's /etc/hosts text; None when the node has none, for which a
            loopback-only file stands in.
    """
    if node_hosts is None:
        return "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    return node_hosts


def hostname_file(config: Any, node_hostname: str) -> str:
    """The pod's /etc/hostname: the pod's hostname, or the node's for a pod without one."""
    return (str(config.hostname) or node_hostname) + "\n"


def sandbox_sysctls(config: Any, options: SpecOptions, *, userns_enabled: bool) -> dict[str, str]:
    """The pod's sysctls plus containerd's unprivileged ports and ICMP defaults (own netns only).

    Raises:
        InvalidArgument: a sysctl the pod's namespaces do not isolate.
    """
    nsopts = config.linux.security_context.namespace_options
    host_network = nsopts.network == api.NODE
    sysctls = {str(k): str(v) for k, v in config.linux.sysctls.items()}
    namespaces.check_sysctls(sysctls, host_network=host_network, host_ipc=nsopts.ipc == api.NODE)
    if not host_network:
        if options.enable_unprivileged_ports:
            sysctls.setdefault(namespaces.UNPRIVILEGED_PORT_START, "0")
        # The group range must map into the user namespace, so only without one.
        if options.enable_unprivileged_icmp and not options.running_in_user_namespace and not userns_enabled:
            sysctls.setdefault(namespaces.PING_GROUP_RANGE, "0 2147483647")
    return sysctls


def _set_namespaces(spec: dict[str, Any], nsopts: Any, netns_path: str, userns_path: str) -> bool:
    """Pod namespaces of the pause process; returns whether the pod has a user namespace."""
    if nsopts.network == api.NODE:
        oci.without_namespace(spec, "network")
        oci.without_namespace(spec, "uts")
    else:
        namespaces.set_namespace(spec, "network", netns_path)
    if nsopts.pid == api.NODE:
        oci.without_namespace(spec, "pid")
    if nsopts.ipc == api.NODE:
        oci.without_namespace(spec, "ipc")
    userns = namespaces.userns_mappings(nsopts)
    if userns is None or nsopts.userns_options.mode != api.POD:
        oci.without_namespace(spec, "user")
        return False
    namespaces.set_id_mappings(spec, *userns)
    if nsopts.network != api.NODE and userns_path:
        # The user namespace that owns the pod's network namespace, pinned by the service.
        namespaces.set_namespace(spec, "user", userns_path)
    return True


def sandbox_spec(
    *,
    sandbox_id: str,
    config: Any,
    image: ImageConfig,
    netns_path: str,
    files: SandboxFiles,
    options: SpecOptions,
    pause_args: Sequence[str] = (),
    namespace: str = "k8s.io",
    sandbox_image: str = "",
    userns_path: str = "",
    passwd: str | None = None,
    group: str | None = None,
) -> dict[str, Any]:
    """Build the spec of a pod's pause container.

    Args:
        sandbox_id: the pod's id (also the pause container's).
        config: the request's ``api_pb2.PodSandboxConfig``.
        image: the pause image's config.
        netns_path: the pod's network namespace (ignored with host networking; "" = a new one).
        files: the pod files on the host; resolv.conf and shm are mounted into the pause
            container too.
        options: plugin, handler and host facts.
        pause_args: the pause command line; empty = the image's entrypoint and cmd.
        namespace: the containerd namespace (the default cgroup path is ``/<namespace>/<id>``).
        sandbox_image: the pause image's name, for the ``podsandbox.image-name`` annotation.
        userns_path: the pinned user namespace of a pod with ``userns_options`` mode POD.
        passwd: the pause image's /etc/passwd text, for a named user.
        group: the pause image's /etc/group text.

    Raises:
        InvalidArgument: nothing to run, a refused sysctl, bad user namespace settings, a bad
            user or seccomp profile.
        NotFound: a missing Localhost seccomp profile.
        FailedPrecondition: seccomp asked for on a host without it.
    """
    linux_config = config.linux
    sc = linux_config.security_context
    nsopts = sc.namespace_options
    args = list(pause_args) or [*image.entrypoint, *image.cmd]
    if not args:
        raise InvalidArgument("invalid empty entrypoint and cmd in the pause image config")

    spec = base_spec(namespace, sandbox_id)
    proc, linux = spec["process"], spec["linux"]
    proc["env"] = process.merge_env([], image.env)  # the pause image's alone: no default PATH
    oci.with_readonly_rootfs(spec)
    if config.hostname:
        oci.with_hostname(spec, str(config.hostname))
    proc["cwd"] = image.working_dir or "/"
    proc["args"] = args
    if options.disable_cgroup:
        linux.pop("cgroupsPath", None)
    else:
        resources.set_cgroups_path(spec, str(linux_config.cgroup_parent), sandbox_id, options)

    userns_enabled = _set_namespaces(spec, nsopts, netns_path, userns_path)
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != DEV_SHM]
    shm = DEV_SHM if nsopts.ipc == api.NODE else files.shm
    for source, destination in ((shm, DEV_SHM), (files.resolv_conf, RESOLV_CONF)):
        if source:
            spec["mounts"].append(
                {"destination": destination, "type": "bind", "source": source, "options": list(_FILE_OPTIONS)}
            )
    if nsopts.network == api.NODE and userns_enabled:
        namespaces.bind_host_sys(spec)

    linux["sysctl"] = sandbox_sysctls(config, options, userns_enabled=userns_enabled)
    linux.setdefault("resources", {}).setdefault("cpu", {})["shares"] = resources.SANDBOX_CPU_SHARES
    if linux_config.HasField("resources"):
        ann.set_annotations(spec, ann.sandbox_sizing(linux_config.resources))
    resources.set_oom_score_adj(spec, resources.SANDBOX_OOM_SCORE_ADJ, options)
    ann.set_annotations(spec, ann.passthrough(config.annotations, options.pod_annotations))
    ann.set_annotations(spec, ann.default_annotations(sandbox_id, config, image_name=sandbox_image, sandbox=True))

    if sc.privileged:
        for mount in spec["mounts"]:
            if mount["destination"] == "/sys":
                mount["options"] = ["rw" if o == "ro" else o for o in mount["options"]]
    filters = seccomp.seccomp_for(
        seccomp.requested_profile(sc, options.unset_seccomp_profile),
        privileged=bool(sc.privileged),
        enabled=options.seccomp_enabled,
        bounding=proc["capabilities"]["bounding"],
        arch=options.arch,
        kernel_version=options.kernel_version,
    )
    if filters is not None:
        linux["seccomp"] = filters
    proc["user"] = process.sandbox_user(sc, image, passwd, group)
    return tidy(spec)
