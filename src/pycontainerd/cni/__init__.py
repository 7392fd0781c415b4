"""Pod networking through CNI plugins: what containerd's CRI does with go-cni and libcni.

Layers, bottom up (each module only uses the ones above it in this list)::

    errors     error kinds (also errdefs kinds, so the CRI maps them to gRPC codes)
    config     parse .conf/.conflist files, pick the networks of a conf dir, find binaries
    results    parse plugin results (0.3.0 .. 1.1.0), merge networks, select the pod IPs
    options    CNI_ARGS labels and capability arguments (portMappings, bandwidth, dns...)
    invoke     exec one plugin: CNI_* env, request config on stdin, result/error, timeout
    cache      libcni-format result records under <cache dir>/results/
    network    the ADD / DEL / CHECK chains of one network for one attachment
    client     CNI: load + reload on conf dir changes, setup/remove/check/status of a pod
    template   conf_template rendering and a default bridge config for the pod CIDR
    netns      network namespaces pinned at <dir>/cni-<uuid> (create, remove, list, enter)

A pod's life, as the CRI drives it::

    path = await create_netns(f"{state}/netns")              # unshare --net=<file> true
    result = await cni.setup(sandbox_id, path, args=pod_args(...), port_mappings=[...])
    ip, additional = result.pod_ips()                         # eth0's IPv4 first
    ...
    await cni.remove(sandbox_id, path)                        # DEL, reverse plugin order
    remove_netns(path)                                        # umount2(MNT_DETACH) + unlink

``cni.status()`` is the CRI ``NetworkReady`` condition. After a daemon restart
``list_netns`` finds the pins; ``remove`` works from the cache without the pod's options.
Everything that execs is asyncio and bounded by a timeout; nothing runs ``unshare`` or
``setns`` on a thread the daemon keeps.
"""

from __future__ import annotations

from pycontainerd.cni.client import CNI as CNI
from pycontainerd.cni.client import NOT_READY_REASON as NOT_READY_REASON
from pycontainerd.cni.client import NetworkStatus as NetworkStatus
from pycontainerd.cni.config import DEFAULT_BIN_DIRS as DEFAULT_BIN_DIRS
from pycontainerd.cni.config import DEFAULT_CONF_DIR as DEFAULT_CONF_DIR
from pycontainerd.cni.config import NetworkConfList as NetworkConfList
from pycontainerd.cni.config import PluginConf as PluginConf
from pycontainerd.cni.config import load_dir as load_dir
from pycontainerd.cni.config import load_file as load_file
from pycontainerd.cni.errors import CNIError as CNIError
from pycontainerd.cni.errors import InvalidConfig as InvalidConfig
from pycontainerd.cni.errors import InvalidResult as InvalidResult
from pycontainerd.cni.errors import NotInitialized as NotInitialized
from pycontainerd.cni.errors import PluginError as PluginError
from pycontainerd.cni.errors import PluginNotFound as PluginNotFound
from pycontainerd.cni.errors import PluginTimeout as PluginTimeout
from pycontainerd.cni.netns import create_netns as create_netns
from pycontainerd.cni.netns import exec_in_netns as exec_in_netns
from pycontainerd.cni.netns import is_netns as is_netns
from pycontainerd.cni.netns import list_netns as list_netns
from pycontainerd.cni.netns import remove_netns as remove_netns
from pycontainerd.cni.netns import run_in_netns as run_in_netns
from pycontainerd.cni.options import Bandwidth as Bandwidth
from pycontainerd.cni.options import DNSConfig as DNSConfig
from pycontainerd.cni.options import IPRange as IPRange
from pycontainerd.cni.options import PortMapping as PortMapping
from pycontainerd.cni.options import pod_args as pod_args
from pycontainerd.cni.results import PluginResult as PluginResult
from pycontainerd.cni.results import Result as Result
from pycontainerd.cni.results import select_pod_ips as select_pod_ips
from pycontainerd.cni.template import default_bridge_conflist as default_bridge_conflist
from pycontainerd.cni.template import render_template as render_template
from pycontainerd.cni.template import write_conf_file as write_conf_file
