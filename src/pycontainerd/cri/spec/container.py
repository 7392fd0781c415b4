"""The OCI spec of a workload container (CreateContainer), as containerd's ``buildLinuxSpec`` makes it.

The steps run in containerd's order, because later ones read or overwrite what earlier ones
set: privileged mode replaces the capabilities set before it, the seccomp profile depends on
the final bounding set, and setting the user resets the additional groups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri.spec import cri_annotations as ann
from pycontainerd.cri.spec import devices, mounts, namespaces, process, resources, seccomp, security
from pycontainerd.cri.spec.capabilities import apply_ambient_capabilities, apply_cri_capabilities
from pycontainerd.cri.spec.host import device_nodes
from pycontainerd.cri.spec.tidy import tidy
from pycontainerd.errdefs import InvalidArgument, Unimplemented
from pycontainerd.oci import spec as oci

if TYPE_CHECKING:
    from collections.abc import Callable

    from pycontainerd.cri.spec.images import ImageConfig
    from pycontainerd.cri.spec.options import SandboxFiles, SpecOptions


def base_spec(namespace: str, container_id: str) -> dict[str, Any]:
    """containerd's default spec as CRI starts from it: no /run mount, no rlimits, root at ``rootfs``.

    containerd's default spec has no environment (``ctr`` adds PATH later), so neither has this.
    """
    spec = oci.default_spec(namespace, container_id)
    spec["process"].pop("env", None)
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/run"]
    spec["process"].pop("rlimits", None)
    spec["process"].pop("apparmorProfile", None)
    spec["linux"].pop("seccomp", None)
    spec["root"] = {"path": "rootfs"}
    return spec


def _device_lookup(options: SpecOptions) -> Callable[[str], list[Any]]:
    return options.host_devices if options.host_devices is not None else device_nodes


def _pid_namespace_owner(nsopts: Any, sandbox_pid: int, target_pid: Callable[[str], int] | None) -> int:
    if nsopts.pid != api.TARGET:
        return sandbox_pid
    if not nsopts.target_id:
        raise InvalidArgument("invalid target container: no target_id for PID namespace mode TARGET")
    if target_pid is None:
        raise InvalidArgument(f"invalid target container: cannot look up container {nsopts.target_id!r}")
    return target_pid(str(nsopts.target_id))


def container_spec(
    *,
    container_id: str,
    sandbox_id: str,
    config: Any,
    sandbox_config: Any,
    image: ImageConfig,
    image_ref: str,
    sandbox_pid: int,
    files: SandboxFiles,
    passwd: str | None,
    group: str | None,
    options: SpecOptions,
    namespace: str = "k8s.io",
    container_root_dir: str = "",
    target_pid: Callable[[str], int] | None = None,
) -> dict[str, Any]:
    """Build the spec of a container in a running pod.

    Args:
        container_id: the new container's id.
        sandbox_id: the pod's id.
        config: the request's ``api_pb2.ContainerConfig``.
        sandbox_config: the pod's ``api_pb2.PodSandboxConfig``.
        image: the container image's config.
        image_ref: the image's name in the image store, for the ``image-name`` annotation
            (the config's ``image.user_specified_image`` wins when kubelet sends one).
        sandbox_pid: the pause process, whose namespaces the container joins.
        files: the pod's hostname, hosts, resolv.conf and shm on the host.
        passwd: the image's /etc/passwd text (None = no such file).
        group: the image's /etc/group text (None = no such file).
        options: plugin, handler and host facts.
        namespace: the containerd namespace (the default cgroup path is ``/<namespace>/<id>``).
        container_root_dir: the container's directory on the host; image volumes get
            directories below it ("" = image volumes are not mounted).
        target_pid: the pid of a running container of the pod, by id, for PID namespace mode
            TARGET; it raises NotFound / FailedPrecondition for a bad target.

    Returns:
        The spec as a JSON-ready dict.

    Raises:
        InvalidArgument: a request containerd refuses (nothing to run, a relative mount, a bad
            user or seccomp profile, a privileged container in an unprivileged pod, user
            namespace settings that differ from the pod's...).
        NotFound: a missing device, seccomp profile file or target container.
        FailedPrecondition: something the host or runtime cannot do (rro mounts, hugepages,
            mount propagation from a private mount, seccomp).
        Unimplemented: CDI devices, image volume mounts not mounted yet, an unknown policy.
    """
    linux_config = config.linux
    sc = linux_config.security_context
    if config.CDI_devices:
        raise Unimplemented("CDI devices are not supported")

    spec = base_spec(namespace, container_id)
    proc = spec["process"]
    proc["args"] = process.process_args(config, image)
    proc["noNewPrivileges"] = False
    proc["cwd"] = str(config.working_dir) or image.working_dir or "/"
    proc["terminal"] = bool(config.tty)
    hostname = str(sandbox_config.hostname) or options.node_hostname
    proc["env"] = process.container_env(config, image, hostname, tty=bool(config.tty))

    # A cgroup namespace hides the host's cgroup tree; containerd gives one only on cgroup v2 and
    # never to privileged containers.
    has_cgroup_ns = options.cgroup_v2 and not sc.privileged
    if has_cgroup_ns:
        namespaces.set_namespace(spec, "cgroup")
    spec["mounts"].append(mounts.cgroup_mount(has_cgroup_ns=has_cgroup_ns, options=options))
    extra = mounts.pod_file_mounts(config, files)
    if container_root_dir and not options.ignore_image_defined_volumes:
        extra += mounts.image_volume_mounts(config, image.volumes, container_root_dir)
    mounts.apply_mounts(spec, config, extra, options)
    security.set_proc_paths(spec, sc, disable_proc_mount=options.disable_proc_mount)
    _devices_and_privileges(spec, config, sandbox_config, options)
    if sc.no_new_privs:
        proc["noNewPrivileges"] = True
    if sc.readonly_rootfs:
        oci.with_readonly_rootfs(spec)

    if options.disable_cgroup:
        spec["linux"].pop("cgroupsPath", None)
    else:
        if linux_config.HasField("resources"):
            resources.apply_resources(spec, linux_config.resources, options)
        resources.set_cgroups_path(spec, str(sandbox_config.linux.cgroup_parent), container_id, options)
    ann.set_annotations(spec, ann.passthrough(sandbox_config.annotations, options.pod_annotations))
    ann.set_annotations(spec, ann.passthrough(config.annotations, options.container_annotations))
    _namespaces(spec, config, sandbox_config, sandbox_pid, target_pid)
    if linux_config.HasField("resources"):
        resources.set_oom_score_adj(spec, int(linux_config.resources.oom_score_adj), options)
    image_name = str(config.image.user_specified_image) or image_ref
    name = str(config.metadata.name)
    ann.set_annotations(
        spec,
        ann.default_annotations(sandbox_id, sandbox_config, container_name=name, image_name=image_name, sandbox=False),
    )

    # What containerd applies after the spec above: user, groups, AppArmor, seccomp (which reads
    # the final bounding set).
    proc["user"] = process.container_user(sc, image, passwd, group)
    profile = security.apparmor_profile(sc, privileged=bool(sc.privileged), disabled=options.disable_apparmor)
    if profile:
        proc["apparmorProfile"] = profile
    filters = seccomp.seccomp_for(
        seccomp.requested_profile(sc, options.unset_seccomp_profile),
        privileged=bool(sc.privileged),
        enabled=options.seccomp_enabled,
        bounding=proc.get("capabilities", {}).get("bounding", []),
        arch=options.arch,
        kernel_version=options.kernel_version,
    )
    if filters is not None:
        spec["linux"]["seccomp"] = filters
    return tidy(spec)


def _devices_and_privileges(spec: dict[str, Any], config: Any, sandbox_config: Any, options: SpecOptions) -> None:
    """CRI devices, then capabilities, then privileged mode (which overrides both)."""
    sc = config.linux.security_context
    owner = (0, 0)
    if options.device_ownership_from_security_context:
        owner = (
            int(sc.run_as_user.value) % 2**32 if sc.HasField("run_as_user") else 0,
            int(sc.run_as_group.value) % 2**32 if sc.HasField("run_as_group") else 0,
        )
    devices.add_cri_devices(spec, config.devices, _device_lookup(options), owner=owner)
    if sc.HasField("capabilities"):
        apply_cri_capabilities(spec, sc.capabilities, options.all_capabilities)
    if sc.privileged:
        if not sandbox_config.linux.security_context.privileged:
            raise InvalidArgument("no privileged container allowed in sandbox")
        security.make_privileged(spec, options.all_capabilities)
        if not options.privileged_without_host_devices:
            devices.add_host_devices(spec, _device_lookup(options))
            devices.allow_all_devices(spec)
        elif options.privileged_without_host_devices_all_devices_allowed:
            devices.allow_all_devices(spec)
    apply_ambient_capabilities(spec, [str(c) for c in sc.capabilities.add_ambient_capabilities])


def _namespaces(
    spec: dict[str, Any], config: Any, sandbox_config: Any, sandbox_pid: int, target_pid: Callable[[str], int] | None
) -> None:
    """Join the pod's namespaces; a user namespace must be the pod's own."""
    nsopts = config.linux.security_context.namespace_options
    pid_owner = _pid_namespace_owner(nsopts, sandbox_pid, target_pid)
    userns = namespaces.userns_mappings(nsopts)
    pod_nsopts = sandbox_config.linux.security_context.namespace_options
    if not namespaces.same_userns(pod_nsopts, nsopts):
        raise InvalidArgument("user namespace config for sandbox is different from container")
    pod_userns = userns is not None and nsopts.userns_options.mode == api.POD
    host_network_userns = pod_nsopts.network == api.NODE and pod_userns
    if host_network_userns:
        namespaces.bind_host_sys(spec)
    namespaces.join_pod_namespaces(spec, nsopts, sandbox_pid=sandbox_pid, target_pid=pid_owner, userns=userns)
    if pod_userns:
        # runc before 1.2 enters the pod's user namespace first and may then no longer join a
        # namespace the initial user namespace owns. Those the pause process shares with the host
        # are left out instead: the container stays in the host's, the same ones.
        shared = {"network": pod_nsopts.network, "uts": pod_nsopts.network, "ipc": nsopts.ipc, "pid": nsopts.pid}
        for kind, mode in shared.items():
            if mode == api.NODE:
                oci.without_namespace(spec, kind)
