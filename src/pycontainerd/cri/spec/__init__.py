"""OCI runtime specs from Kubernetes CRI configs, as containerd 2.x's CRI plugin builds them.

Pure functions: CRI v1 messages (``pycontainerd.api.k8s.cri.runtime.v1.api_pb2``) and plain
values in, a JSON-ready dict out (``pycontainerd.oci.spec.encode`` makes it bytes). The only
I/O is reading a Localhost seccomp profile and, unless :class:`SpecOptions` injects
replacements, stat-ing device nodes; host facts arrive in :class:`SpecOptions`.
:func:`host_options` probes them once and also plugs in what containerd does to the host while
building a spec: creating missing bind mount sources (and resolving their symlinks) and checking
the propagation of their mounts. The CRI service calls it per runtime handler, e.g.
``host_options(restrict_oom_score_adj=cfg.restrict_oom_score_adj, pod_annotations=tuple(h.pod_annotations),
systemd_cgroup=h.systemd_cgroup, ...)``, reads /etc/passwd and /etc/group from the image's rootfs,
prepares the pod's files (:func:`hostname_file`, :func:`hosts_file`, :func:`resolv_conf`, a
tmpfs for /dev/shm) and encodes the returned dicts.

Entry points::

    sandbox_spec(*, sandbox_id, config: PodSandboxConfig, image: ImageConfig, netns_path,
                 files: SandboxFiles, options: SpecOptions, pause_args=(), namespace="k8s.io",
                 sandbox_image="", userns_path="", passwd=None, group=None) -> dict
    container_spec(*, container_id, sandbox_id, config: ContainerConfig, sandbox_config: PodSandboxConfig,
                   image: ImageConfig, image_ref, sandbox_pid, files: SandboxFiles, passwd, group,
                   options: SpecOptions, namespace="k8s.io", container_root_dir="", target_pid=None) -> dict
    update_resources(spec, resources: LinuxContainerResources, options) -> dict   # a new spec
    resolv_conf(dns: DNSConfig) -> str;  hosts_file(node_hosts) -> str;  hostname_file(config, node) -> str
    cgroups_path(cgroup_parent, id, systemd=False) -> str

Layout, one concern per module, in the order :mod:`.container` applies them:

- :mod:`.options` (:class:`SpecOptions`, :class:`SandboxFiles`, :class:`HostDevice`),
  :mod:`.images` (:class:`ImageConfig`), :mod:`.host` (probes and the real I/O callables);
- :mod:`.process` (args, env, cwd, user) on :mod:`.users` (/etc/passwd and /etc/group text);
- :mod:`.mounts` (bind mounts, pod files, image volumes), :mod:`.devices`;
- :mod:`.capabilities`, :mod:`.security` (AppArmor, privileged, masked paths),
  :mod:`.seccomp` with the RuntimeDefault profile as data in :mod:`.seccomp_default`;
- :mod:`.resources` (cgroup limits and paths, OOM score), :mod:`.namespaces` (pod
  namespaces, user namespace mappings, sysctl checks), :mod:`.cri_annotations`;
- :mod:`.container` and :mod:`.sandbox` compose them; :mod:`.tidy` drops what Go's
  ``omitempty`` would.

Errors are ``pycontainerd.errdefs`` kinds: InvalidArgument for requests containerd refuses,
NotFound for missing files and devices, FailedPrecondition for what the host or runtime cannot
do, Unimplemented for CRI features pycontainerd lacks (CDI, unmounted image volumes).
"""

from __future__ import annotations

from pycontainerd.cri.spec.capabilities import KNOWN_CAPABILITIES as KNOWN_CAPABILITIES
from pycontainerd.cri.spec.container import container_spec as container_spec
from pycontainerd.cri.spec.host import host_options as host_options
from pycontainerd.cri.spec.images import ImageConfig as ImageConfig
from pycontainerd.cri.spec.options import HostDevice as HostDevice
from pycontainerd.cri.spec.options import SandboxFiles as SandboxFiles
from pycontainerd.cri.spec.options import SpecOptions as SpecOptions
from pycontainerd.cri.spec.resources import cgroups_path as cgroups_path
from pycontainerd.cri.spec.resources import update_resources as update_resources
from pycontainerd.cri.spec.sandbox import hostname_file as hostname_file
from pycontainerd.cri.spec.sandbox import hosts_file as hosts_file
from pycontainerd.cri.spec.sandbox import resolv_conf as resolv_conf
from pycontainerd.cri.spec.sandbox import sandbox_spec as sandbox_spec

__all__ = [
    "KNOWN_CAPABILITIES",
    "HostDevice",
    "ImageConfig",
    "SandboxFiles",
    "SpecOptions",
    "cgroups_path",
    "container_spec",
    "host_options",
    "hostname_file",
    "hosts_file",
    "resolv_conf",
    "sandbox_spec",
    "update_resources",
]
