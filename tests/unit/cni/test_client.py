"""The CNI object: loading and reloading, readiness, and a pod's setup/remove/check."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from pycontainerd.cni import CNI, NOT_READY_REASON, PortMapping, pod_args
from pycontainerd.cni.errors import InvalidConfig, NotInitialized, PluginError
from tests.unit.cni import fakeplugin
from tests.unit.cni.fakeplugin import write_json


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.conf = root / "net.d"
        self.cache = root / "cache"
        fakeplugin.install(self.bin, "loopback", "bridge", "portmap", "macvlan")

    def cni(self, **kw: Any) -> CNI:
        kw.setdefault("bin_dirs", [str(self.bin)])
        return CNI(cache_dir=self.cache, conf_dir=self.conf, **kw)

    def write(self, name: str, *plugins: dict[str, Any], version: str = "1.0.0", net: str = "podnet") -> Path:
        path = write_json(self.conf / name, {"cniVersion": version, "name": net, "plugins": list(plugins)})
        # mtime resolution must not hide a rewrite within the same tick
        stamp = time.time_ns() + len(self.calls()) * 1000
        os.utime(path, ns=(stamp, stamp))
        return path

    def calls(self) -> list[dict[str, Any]]:
        return fakeplugin.calls(self.bin)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


BRIDGE = {"type": "bridge", "fake": {"ip": "10.22.0.9/24"}}
PORTMAP = {"type": "portmap", "capabilities": {"portMappings": True}}


def test_status_without_config_says_why(env: Env) -> None:
    status = env.cni().status()
    assert not status.ready
    assert status.reason == NOT_READY_REASON == "NetworkPluginNotReady"
    assert status.message == (
        f"Network plugin returns error: cni config load failed: no network config found in {env.conf}: "
        "cni plugin not initialized"
    )


def test_status_ready_and_missing_binary(env: Env) -> None:
    env.write("10-net.conflist", BRIDGE, PORTMAP)
    cni = env.cni()
    assert cni.status() == (True, "", "")
    os.unlink(env.bin / "portmap")
    status = cni.status()
    assert not status.ready
    assert "failed to find plugin 'portmap'" in status.message


def test_broken_config_is_reported_and_setup_refused(env: Env) -> None:
    (env.conf).mkdir()
    (env.conf / "10-net.conflist").write_text("{")
    cni = env.cni()
    assert str(env.conf / "10-net.conflist") in cni.status().message
    with pytest.raises(InvalidConfig):
        run(cni.setup("sb", "/ns"))
    with pytest.raises(InvalidConfig):
        cni.load()


def test_reload_when_the_conf_dir_changes(env: Env) -> None:
    cni = env.cni()
    assert not cni.status().ready
    env.write("20-b.conflist", BRIDGE, net="bnet")
    assert cni.status().ready, "a new file is picked up without a restart"
    assert [n.name for n in cni.networks] == ["cni-loopback", "bnet"]
    env.write("10-a.conflist", {"type": "macvlan"}, net="anet")
    assert [(n.name, n.ifname) for n in cni.networks] == [("cni-loopback", "lo"), ("anet", "eth0")]
    os.unlink(env.conf / "10-a.conflist")
    os.unlink(env.conf / "20-b.conflist")
    assert not cni.status().ready
    assert cni.refresh() is False, "nothing changed since the last look"


def test_without_loopback_one_network_is_enough(env: Env) -> None:
    env.write("10-net.conflist", BRIDGE)
    cni = env.cni(loopback=False, max_conf_num=0)
    assert [(n.name, n.ifname) for n in cni.networks] == [("podnet", "eth0")]
    assert cni.status().ready


def test_setup_attaches_loopback_and_every_network(env: Env) -> None:
    env.write("10-a.conflist", BRIDGE, PORTMAP, net="anet")
    env.write("20-b.conflist", {"type": "macvlan", "fake": {"ip": "192.168.5.5/24"}}, net="bnet")
    cni = env.cni(max_conf_num=2)
    args = pod_args(namespace="ns", name="pod", sandbox_id="sb1", uid="uid1")
    result = run(cni.setup("sb1", "/run/netns/cni-x", args=args, port_mappings=[PortMapping(8080, 80)]))

    assert result.pod_ips() == ("10.22.0.9", [])
    assert [str(ip) for ip, _ in result.interfaces["eth1"].ips] == ["192.168.5.5"]
    adds = {(c["plugin"], c["env"]["CNI_IFNAME"]) for c in env.calls()}
    assert adds == {("loopback", "lo"), ("bridge", "eth0"), ("portmap", "eth0"), ("macvlan", "eth1")}
    for call in env.calls():
        assert call["env"]["CNI_ARGS"].startswith("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod;")
        assert call["env"]["CNI_NETNS"] == "/run/netns/cni-x"
        expected = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
        assert call["stdin"].get("runtimeConfig") == (expected if call["plugin"] == "portmap" else None)
    assert json.loads(json.dumps(result.to_dict()))["defaultInterface"] == "eth0"


def test_setup_serially_keeps_network_order(env: Env) -> None:
    env.write("10-a.conflist", BRIDGE, net="anet")
    env.write("20-b.conflist", {"type": "macvlan"}, net="bnet")
    run(env.cni(max_conf_num=0).setup("sb", "/ns", serially=True))
    assert [c["plugin"] for c in env.calls()] == ["loopback", "bridge", "macvlan"]


def test_setup_failure_waits_for_all_then_raises(env: Env) -> None:
    env.write("10-net.conflist", {"type": "bridge", "fake": {"error": {"code": 7, "msg": "no"}}})
    cni = env.cni()
    with pytest.raises(PluginError, match="no"):
        run(cni.setup("sb", "/ns"))
    assert cni.cache.get("cni-loopback", "sb", "lo") is not None, "loopback finished; remove() undoes it"


def test_remove_after_restart_uses_the_cache(env: Env) -> None:
    env.write("10-net.conflist", BRIDGE, PORTMAP)
    run(env.cni().setup("sb", "/not/a/netns", args={"K": "V"}, port_mappings=[PortMapping(9000, 90)]))
    fakeplugin.clear(env.bin)

    run(env.cni().remove("sb", "/not/a/netns"))  # a new CNI object: the daemon restarted
    calls = env.calls()
    assert [c["plugin"] for c in calls] == ["loopback", "portmap", "bridge"]
    for call in calls:
        assert call["env"]["CNI_COMMAND"] == "DEL"
        assert call["env"]["CNI_NETNS"] == "", "a path that is not a namespace is passed as gone"
        assert call["env"]["CNI_ARGS"] == "K=V"
    portmap = calls[1]["stdin"]
    assert portmap["runtimeConfig"]["portMappings"][0]["hostPort"] == 9000
    assert portmap["prevResult"]["ips"][0]["address"] == "10.22.0.9/24"
    assert env.cni().cache.attachments("sb") == []

    fakeplugin.clear(env.bin)
    run(env.cni().remove("sb", ""))
    assert len(env.calls()) == 3, "remove is idempotent"


def test_remove_tolerates_not_found_errors(env: Env) -> None:
    env.write(
        "10-net.conflist",
        {"type": "bridge", "fake": {"fail_on": ["DEL"], "error": {"code": 3, "msg": "Link not found"}}},
    )
    run(env.cni().remove("sb", ""))
    env.write(
        "10-net.conflist", {"type": "bridge", "fake": {"fail_on": ["DEL"], "error": {"code": 5, "msg": "disk on fire"}}}
    )
    with pytest.raises(PluginError, match="disk on fire"):
        run(env.cni().remove("sb", ""))


def test_remove_cleans_attachments_of_networks_that_left(env: Env) -> None:
    env.write("10-old.conflist", {"type": "macvlan", "fake": {"marker": "old"}}, net="oldnet")
    run(env.cni().setup("sb", "/ns"))
    os.unlink(env.conf / "10-old.conflist")
    env.write("10-new.conflist", BRIDGE, net="newnet")
    fakeplugin.clear(env.bin)
    run(env.cni().remove("sb", ""))
    dels = [(c["plugin"], c["stdin"]["name"]) for c in env.calls()]
    assert dels == [("loopback", "cni-loopback"), ("bridge", "newnet"), ("macvlan", "oldnet")]
    assert env.calls()[-1]["stdin"]["fake"] == {"marker": "old"}, "DEL used the cached config"
    assert env.cni().cache.attachments("sb") == []


def test_check(env: Env) -> None:
    env.write("10-net.conflist", BRIDGE, PORTMAP)
    cni = env.cni()
    run(cni.setup("sb", "/ns", args={"K": "V"}))
    fakeplugin.clear(env.bin)
    run(cni.check("sb", "/ns"))
    assert [(c["plugin"], c["env"]["CNI_COMMAND"], c["env"]["CNI_ARGS"]) for c in env.calls()] == [
        ("loopback", "CHECK", "K=V"),
        ("bridge", "CHECK", "K=V"),
        ("portmap", "CHECK", "K=V"),
    ]


def test_not_initialized_setup(env: Env) -> None:
    with pytest.raises(NotInitialized, match="no network config found"):
        run(env.cni().setup("sb", "/ns"))


def test_update_pod_cidr_writes_a_config_only_when_none_is_loaded(env: Env, tmp_path: Path) -> None:
    cni = env.cni()
    assert cni.update_pod_cidr("10.44.0.0/24") == "", "no template configured"
    written = cni.update_pod_cidr("10.44.0.0/24", default_bridge=True)
    assert written == str(env.conf / "10-containerd-net.conflist")
    assert [n.name for n in cni.networks] == ["cni-loopback", "containerd-net"]
    assert cni.update_pod_cidr("10.55.0.0/24", default_bridge=True) == "", "a config is loaded now"

    other = Env(tmp_path / "other")
    template = tmp_path / "tmpl"
    template.write_text(
        '{"cniVersion": "1.0.0", "name": "t", "plugins": [{"type": "bridge", "subnet": "{{.PodCIDR}}"}]}'
    )
    cni = other.cni()
    cni.update_pod_cidr("10.66.0.0/24", template_path=str(template))
    assert cni.networks[1].config.plugins[0].conf["subnet"] == "10.66.0.0/24"


def test_config_info(env: Env) -> None:
    env.write("10-net.conflist", BRIDGE)
    info = env.cni().config_info()
    assert info["PluginConfDir"] == str(env.conf)
    assert [n["IFName"] for n in info["Networks"]] == ["lo", "eth0"]
    json.dumps(info)


def test_remove_without_any_config_uses_the_cache(env: Env) -> None:
    env.write("10-net.conflist", BRIDGE, PORTMAP)
    run(env.cni().setup("sb", "/ns"))
    os.unlink(env.conf / "10-net.conflist")
    fakeplugin.clear(env.bin)
    cni = env.cni()
    assert not cni.status().ready
    run(cni.remove("sb", ""))
    assert sorted(c["plugin"] for c in env.calls()) == ["bridge", "loopback", "portmap"]
    assert cni.cache.attachments() == []
    with pytest.raises(NotInitialized):
        run(cni.remove("sb", ""))  # nothing cached and no config: say so
