"""``[plugins."io.containerd.grpc.v1.cri"]``: the CRI plugin's configuration (config version 2 layout).

The keys are containerd's: ``sandbox_image``, the stream server, ``[...containerd]`` with
``snapshotter``, ``default_runtime_name`` and ``[...containerd.runtimes.<handler>]``, ``[...cni]``
and ``[...registry] config_path``. Properties containerd 2.0 removed are refused at start-up
with a message naming what replaces them, so a config written for containerd 1.x never half works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pycontainerd.config.model import ConfigError
from pycontainerd.core.containers import Runtime
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.gc.durations import parse_duration as go_duration
from pycontainerd.metadata.containers import unpack_any
from pycontainerd.runtime.v2.config import RuntimeEntry

PLUGIN_KEY = 'plugins."io.containerd.grpc.v1.cri"'
DEFAULT_RUNTIME_TYPE = "io.containerd.runc.v2"
DEFAULT_HANDLER = "runc"
K8S_NAMESPACE = "k8s.io"


def _removed(where: str, key: str, instead: str) -> ConfigError:
    return ConfigError(f"{where}.{key} was removed in containerd 2.0 and is not supported: {instead}")


@dataclass(slots=True)
class RuntimeHandlerConfig:
    """``[...containerd.runtimes.<handler>]``: one runtime handler kubelet can name."""

    runtime_type: str = DEFAULT_RUNTIME_TYPE
    runtime_path: str = ""
    pod_annotations: list[str] = field(default_factory=list)
    container_annotations: list[str] = field(default_factory=list)
    privileged_without_host_devices: bool = False
    privileged_without_host_devices_all_devices_allowed: bool = False
    base_runtime_spec: str = ""
    cni_conf_dir: str = ""
    cni_max_conf_num: int = 0
    snapshotter: str = ""
    sandboxer: str = "podsandbox"
    sandbox_mode: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    # Removed in containerd 2.0; kept as fields only to refuse them by name.
    runtime_engine: str | None = None
    runtime_root: str | None = None

    def validate(self, where: str) -> None:
        """Refuse removed properties and unknown runc options."""
        if self.runtime_engine is not None:
            raise _removed(where, "runtime_engine", "use a runtime v2 runtime_type")
        if self.runtime_root is not None:
            raise _removed(where, "runtime_root", "use options.Root")
        if "CriuPath" in self.options:
            raise _removed(where, "options.CriuPath", "put criu on the PATH of the shim")
        if self.sandbox_mode:
            self.sandboxer = self.sandbox_mode  # containerd 1.7 called it sandbox_mode
        if self.sandboxer not in ("podsandbox", "shim"):
            raise ConfigError(f'{where}.sandboxer: expected "podsandbox" or "shim", got {self.sandboxer!r}')
        if self.is_runc:
            try:
                self.runc_options()
            except InvalidArgument as exc:
                detail = exc.message.split(".options: ", 1)[-1]
                raise ConfigError(f"{where}.options: {detail}") from None

    @property
    def is_runc(self) -> bool:
        """Whether the handler's shim takes runc options."""
        return self.runtime_type.startswith("io.containerd.runc.")

    def runc_options(self) -> bytes | None:
        """``options`` as the serialized Any (containerd.runc.v1.Options) a task is created with."""
        if not self.is_runc:
            return None
        return RuntimeEntry(options=dict(self.options)).runc_options(self.runtime_type)

    def runtime(self) -> Runtime:
        """The runtime (type and options) of the containers and sandboxes this handler runs."""
        return Runtime(self.runtime_type, unpack_any(self.runc_options()))

    @property
    def systemd_cgroup(self) -> bool:
        """Whether runc manages cgroups through systemd (``options.SystemdCgroup``)."""
        return bool(self.options.get("SystemdCgroup", False))


@dataclass(slots=True)
class ContainerdSection:
    """``[...containerd]``: snapshotter and runtime handlers."""

    snapshotter: str = "overlayfs"
    default_runtime_name: str = DEFAULT_HANDLER
    runtimes: dict[str, RuntimeHandlerConfig] = field(default_factory=dict)
    discard_unpacked_layers: bool = False
    disable_snapshot_annotations: bool = True
    ignore_blockio_not_enabled_errors: bool = False
    ignore_rdt_not_enabled_errors: bool = False
    # Removed in containerd 2.0.
    default_runtime: dict[str, Any] | None = None
    untrusted_workload_runtime: dict[str, Any] | None = None
    no_pivot: bool | None = None

    def validate(self, where: str) -> None:
        """Merge the default handler in (as TOML decoding onto containerd's defaults does) and check."""
        if self.default_runtime is not None:
            raise _removed(where, "default_runtime", "use default_runtime_name and [containerd.runtimes.<name>]")
        if self.untrusted_workload_runtime is not None:
            raise _removed(
                where, "untrusted_workload_runtime", "use a runtime handler under [containerd.runtimes.<name>]"
            )
        if self.no_pivot is not None:
            raise _removed(where, "no_pivot", "use options.NoPivotRoot of the runtime")
        if DEFAULT_HANDLER not in self.runtimes:
            self.runtimes = {DEFAULT_HANDLER: RuntimeHandlerConfig(), **self.runtimes}
        for name, handler in self.runtimes.items():
            handler.validate(f'{where}.runtimes."{name}"')
        if self.default_runtime_name not in self.runtimes:
            raise ConfigError(
                f"{where}.default_runtime_name: no runtime {self.default_runtime_name!r} in {where}.runtimes"
            )


@dataclass(slots=True)
class CNISection:
    """``[...cni]``: where network configs and plugin binaries live."""

    bin_dir: str = ""
    bin_dirs: list[str] = field(default_factory=lambda: ["/opt/cni/bin", "/usr/lib/cni"])
    conf_dir: str = "/etc/cni/net.d"
    max_conf_num: int = 1
    conf_template: str = ""
    ip_pref: str = ""
    setup_serially: bool = False

    @property
    def plugin_dirs(self) -> list[str]:
        """``bin_dir`` (containerd 1.x, one directory) first, then ``bin_dirs``."""
        return ([self.bin_dir] if self.bin_dir else []) + [d for d in self.bin_dirs if d != self.bin_dir]


@dataclass(slots=True)
class RegistrySection:
    """``[...registry]``: only ``config_path`` (a directory of hosts.toml files) remains."""

    config_path: str = ""
    # Removed in containerd 2.0.
    mirrors: dict[str, Any] | None = None
    configs: dict[str, Any] | None = None
    auths: dict[str, Any] | None = None
    headers: dict[str, Any] | None = None

    def validate(self, where: str) -> None:
        """Refuse the removed inline registry tables."""
        for key in ("mirrors", "configs", "auths"):
            if getattr(self, key) is not None:
                raise _removed(
                    where,
                    key,
                    "use config_path with a hosts.toml per registry (see docs/registry.md); "
                    "credentials come from kubelet's PullImage auth",
                )


def parse_duration(text: str, where: str) -> float:
    """A Go duration string (``4h0m0s``, ``1m30s``, ``500ms``, ``0``) in seconds; ConfigError names ``where``."""
    try:
        return go_duration(text)
    except ValueError:
        raise ConfigError(f'{where}: invalid duration "{text}"') from None


@dataclass(slots=True)
class CRIConfig:
    """``[plugins."io.containerd.grpc.v1.cri"]``."""

    disable: bool = False
    disable_v1alpha2: bool = False
    sandbox_image: str = ""
    stream_server_address: str = "127.0.0.1"
    stream_server_port: str = "0"
    stream_idle_timeout: str = "4h0m0s"
    enable_tls_streaming: bool = False
    max_container_log_line_size: int = 16 * 1024
    disable_cgroup: bool = False
    disable_apparmor: bool = True
    restrict_oom_score_adj: bool = False
    disable_proc_mount: bool = False
    unset_seccomp_profile: str = ""
    tolerate_missing_hugetlb_controller: bool = True
    disable_hugetlb_controller: bool = True
    device_ownership_from_security_context: bool = False
    ignore_image_defined_volumes: bool = False
    netns_mounts_under_state_dir: bool = True
    enable_unprivileged_ports: bool = True
    enable_unprivileged_icmp: bool = True
    enable_selinux: bool = False
    enable_cdi: bool = False
    cdi_spec_dirs: list[str] = field(default_factory=lambda: ["/etc/cdi", "/var/run/cdi"])
    drain_exec_sync_io_timeout: str = "0s"
    stats_collect_period: int = 10
    image_pull_progress_timeout: str = "5m0s"
    max_concurrent_downloads: int = 3
    containerd: ContainerdSection = field(default_factory=ContainerdSection)
    cni: CNISection = field(default_factory=CNISection)
    registry: RegistrySection = field(default_factory=RegistrySection)
    # Removed in containerd 2.0.
    systemd_cgroup: bool | None = None

    def __post_init__(self) -> None:
        if self.systemd_cgroup is not None:
            raise _removed(
                PLUGIN_KEY, "systemd_cgroup", "set SystemdCgroup = true in containerd.runtimes.<name>.options"
            )
        if self.enable_tls_streaming:
            raise ConfigError(f"{PLUGIN_KEY}.enable_tls_streaming: TLS streaming is not supported by pycontainerd")
        self.containerd.validate(f"{PLUGIN_KEY}.containerd")
        self.registry.validate(f"{PLUGIN_KEY}.registry")
        parse_duration(self.stream_idle_timeout, f"{PLUGIN_KEY}.stream_idle_timeout")
        parse_duration(self.drain_exec_sync_io_timeout, f"{PLUGIN_KEY}.drain_exec_sync_io_timeout")
        parse_duration(self.image_pull_progress_timeout, f"{PLUGIN_KEY}.image_pull_progress_timeout")
        if not self.stream_server_port.isdigit() or int(self.stream_server_port) > 65535:
            raise ConfigError(f'{PLUGIN_KEY}.stream_server_port: not a port: "{self.stream_server_port}"')

    @property
    def stream_idle_seconds(self) -> float:
        """``stream_idle_timeout`` in seconds."""
        return parse_duration(self.stream_idle_timeout, f"{PLUGIN_KEY}.stream_idle_timeout")

    def handler(self, name: str) -> RuntimeHandlerConfig:
        """The runtime handler kubelet names (empty = the default one); KeyError if not configured."""
        return self.containerd.runtimes[name or self.containerd.default_runtime_name]

    def handler_name(self, name: str) -> str:
        """The configured name of handler ``name`` (empty = the default one)."""
        return name or self.containerd.default_runtime_name

    def snapshotter_for(self, handler: str) -> str:
        """The snapshotter that holds rootfs for ``handler`` (its own, else the plugin's)."""
        try:
            own = self.handler(handler).snapshotter
        except KeyError:
            own = ""
        return own or self.containerd.snapshotter
