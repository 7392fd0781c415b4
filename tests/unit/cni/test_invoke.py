"""Executing plugins per the CNI spec, checked against fake plugins that record each call."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from pycontainerd.cni import network as chain
from pycontainerd.cni.cache import ResultCache
from pycontainerd.cni.config import parse_conflist
from pycontainerd.cni.errors import PluginError, PluginNotFound, PluginTimeout, PluginUnavailable
from pycontainerd.cni.invoke import Invoker, RuntimeConf, build_config, cni_args
from pycontainerd.cni.options import Bandwidth, PortMapping, capability_args, pod_args
from pycontainerd.errdefs import DeadlineExceeded, InvalidArgument, Unavailable
from tests.unit.cni import fakeplugin


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    fakeplugin.install(d, "main", "chained", "other")
    return d


def network(*plugins: dict[str, Any], version: str = "1.0.0", name: str = "testnet") -> Any:
    return parse_conflist(json.dumps({"cniVersion": version, "name": name, "plugins": list(plugins)}).encode())


RT = RuntimeConf("sandbox1", "/run/netns/x", "eth0", (("IgnoreUnknown", "1"), ("K8S_POD_NAME", "p")), {})


def test_cni_args_format() -> None:
    args = pod_args(namespace="default", name="web", sandbox_id="abc123", uid="u-1")
    assert cni_args(tuple(args.items())) == (
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=u-1"
    )


def test_environment_of_an_add(bin_dir: Path) -> None:
    invoker = Invoker((str(bin_dir), "/nonexistent"))
    run(invoker.add(network({"type": "main"}), network({"type": "main"}).plugins[0], None, RT))
    env = fakeplugin.calls(bin_dir)[0]["env"]
    assert env == {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "sandbox1",
        "CNI_NETNS": "/run/netns/x",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=p",
        "CNI_PATH": f"{bin_dir}:/nonexistent",
    }


def test_request_config_gets_name_version_and_only_declared_capabilities() -> None:
    net = network(
        {"type": "main", "name": "ignored", "cniVersion": "0.1.0", "keep": {"a": 1}},
        {"type": "chained", "capabilities": {"portMappings": True, "bandwidth": False}},
        {"type": "other", "capabilities": {"bandwidth": True, "dns": True}},
    )
    caps = capability_args(
        port_mappings=[PortMapping(8080, 80, "TCP", "127.0.0.1"), PortMapping(0, 53, "udp")],
        bandwidth=Bandwidth(ingress_rate=1000, ingress_burst=10),
    )
    rt = RuntimeConf("id", "/ns", "eth0", (), caps)
    first = build_config(net, net.plugins[0], None, rt)
    assert first == {"type": "main", "name": "testnet", "cniVersion": "1.0.0", "keep": {"a": 1}}
    second = build_config(net, net.plugins[1], {"cniVersion": "1.0.0"}, rt)
    assert second["runtimeConfig"] == {
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}]
    }, "a mapping without host port is dropped, a disabled capability is not passed"
    assert second["prevResult"] == {"cniVersion": "1.0.0"}
    third = build_config(net, net.plugins[2], None, rt)
    assert third["runtimeConfig"] == {
        "bandwidth": {"ingressRate": 1000, "ingressBurst": 10, "egressRate": 0, "egressBurst": 0}
    }, "dns is declared but not provided"
    assert net.plugins[0].conf["name"] == "ignored", "the network's config is not modified"


def test_add_chain_passes_prev_result_and_caches_the_last(tmp_path: Path, bin_dir: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    net = network(
        {"type": "main", "fake": {"ip": "10.9.0.5/16"}},
        {"type": "chained", "capabilities": {"portMappings": True}},
    )
    rt = RuntimeConf("sb", "/ns", "eth0", (("A", "1"),), {"portMappings": [{"hostPort": 1, "containerPort": 2}]})
    result = run(chain.add(Invoker((str(bin_dir),)), cache, net, rt))
    assert [str(ip.address) for ip in result.ips] == ["10.9.0.5/16"]

    first, second = fakeplugin.calls(bin_dir)
    assert (first["plugin"], second["plugin"]) == ("main", "chained")
    assert "prevResult" not in first["stdin"]
    assert "runtimeConfig" not in first["stdin"]
    assert second["stdin"]["prevResult"]["ips"][0]["address"] == "10.9.0.5/16"
    assert second["stdin"]["runtimeConfig"] == {"portMappings": [{"hostPort": 1, "containerPort": 2}]}

    record = cache.get("testnet", "sb", "eth0")
    assert record is not None
    assert record.result is not None and record.result["ips"][0]["address"] == "10.9.0.5/16"
    assert record.cni_args == (("A", "1"),)
    assert json.loads(record.config)["name"] == "testnet"
    layout = json.loads((tmp_path / "cache" / "results" / "testnet-sb-eth0").read_text())
    assert layout["kind"] == "cniCacheV1", "libcni's cache format"


def test_del_runs_in_reverse_with_cached_result_and_args(tmp_path: Path, bin_dir: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    net = network({"type": "main"}, {"type": "chained", "capabilities": {"portMappings": True}})
    caps = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    run(chain.add(Invoker((str(bin_dir),)), cache, net, RuntimeConf("sb", "/ns", "eth0", (("A", "1"),), caps)))
    fakeplugin.clear(bin_dir)

    # A "restarted" daemon: a new invoker and cache object, and no pod options at hand.
    run(chain.delete(Invoker((str(bin_dir),)), ResultCache(tmp_path / "cache"), net, RuntimeConf("sb", "", "eth0")))
    calls = fakeplugin.calls(bin_dir)
    assert [c["plugin"] for c in calls] == ["chained", "main"]
    for call in calls:
        assert call["env"]["CNI_COMMAND"] == "DEL"
        assert call["env"]["CNI_ARGS"] == "A=1"
        assert call["env"]["CNI_NETNS"] == ""
        assert call["stdin"]["prevResult"]["ips"][0]["address"] == "10.22.0.2/24"
    assert calls[0]["stdin"]["runtimeConfig"] == caps
    assert cache.get("testnet", "sb", "eth0") is None, "the record goes with a successful DEL"

    fakeplugin.clear(bin_dir)
    run(chain.delete(Invoker((str(bin_dir),)), cache, net, RuntimeConf("sb", "", "eth0")))
    assert all("prevResult" not in c["stdin"] for c in fakeplugin.calls(bin_dir)), "a second DEL has no record"


def test_del_before_0_4_0_gets_no_prev_result(tmp_path: Path, bin_dir: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    net = network({"type": "main"}, version="0.3.1")
    run(chain.add(Invoker((str(bin_dir),)), cache, net, RT))
    fakeplugin.clear(bin_dir)
    run(chain.delete(Invoker((str(bin_dir),)), cache, net, RT))
    assert "prevResult" not in fakeplugin.calls(bin_dir)[0]["stdin"]


def test_failed_del_keeps_the_record_for_a_retry(tmp_path: Path, bin_dir: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    good = network({"type": "main"})
    run(chain.add(Invoker((str(bin_dir),)), cache, good, RT))
    bad = network({"type": "main", "fake": {"fail_on": ["DEL"], "error": {"code": 11, "msg": "busy"}}})
    with pytest.raises(PluginUnavailable) as info:
        run(chain.delete(Invoker((str(bin_dir),)), cache, bad, RT))
    assert info.value.retryable
    assert isinstance(info.value, Unavailable)
    assert cache.get("testnet", "sandbox1", "eth0") is not None


def test_plugin_error_json_becomes_a_clear_exception(bin_dir: Path) -> None:
    net = network(
        {"type": "main", "fake": {"error": {"code": 7, "msg": "bad subnet", "details": "10.0.0.0/31 too small"}}}
    )
    with pytest.raises(PluginError) as info:
        run(Invoker((str(bin_dir),)).add(net, net.plugins[0], None, RT))
    err = info.value
    assert (err.plugin, err.network, err.command, err.code) == ("main", "testnet", "ADD", 7)
    assert (err.msg, err.details) == ("bad subnet", "10.0.0.0/31 too small")
    assert str(err) == "plugin type='main' name='testnet' failed (add): code 7: bad subnet; 10.0.0.0/31 too small"


@pytest.mark.parametrize(
    ("fake", "code", "message"),
    [
        ({"error": {"code": 3, "msg": "on stderr"}, "error_stream": "stderr"}, 3, "on stderr"),
        ({"raw_stdout": "garbage", "exit": 2}, 0, "error parsing its diagnostic message 'garbage'"),
        ({"raw_stderr": "panic: boom", "exit": 2}, 0, "netplugin failed: 'panic: boom': exit status 2"),
        ({"exit": 1}, 0, "netplugin failed with no error message: exit status 1"),
    ],
)
def test_malformed_failures(bin_dir: Path, fake: dict[str, Any], code: int, message: str) -> None:
    net = network({"type": "main", "fake": fake})
    with pytest.raises(PluginError) as info:
        run(Invoker((str(bin_dir),)).add(net, net.plugins[0], None, RT))
    assert info.value.code == code
    assert message in str(info.value)


def test_timeout_kills_the_plugin(bin_dir: Path) -> None:
    net = network({"type": "main", "fake": {"sleep": 30}})
    started = time.monotonic()
    with pytest.raises(PluginTimeout) as info:
        run(Invoker((str(bin_dir),), timeout=0.5).add(net, net.plugins[0], None, RT))
    assert time.monotonic() - started < 5
    assert isinstance(info.value, DeadlineExceeded)
    assert "timed out after 0.5s" in str(info.value)


def test_missing_plugin(bin_dir: Path) -> None:
    net = network({"type": "nope"})
    with pytest.raises(PluginNotFound, match="nope"):
        run(Invoker((str(bin_dir),)).add(net, net.plugins[0], None, RT))


def test_invalid_result_is_refused(bin_dir: Path) -> None:
    from pycontainerd.cni.errors import InvalidResult

    net = network({"type": "main", "fake": {"result": {"ips": [{"address": "not-an-ip"}]}}})
    with pytest.raises(InvalidResult):
        run(Invoker((str(bin_dir),)).add(net, net.plugins[0], None, RT))


def test_result_without_version_gets_the_networks(bin_dir: Path) -> None:
    net = network({"type": "main", "fake": {"result": {"cniVersion": "", "ips": [{"address": "10.1.1.1/24"}]}}})
    _, parsed = run(Invoker((str(bin_dir),)).add(net, net.plugins[0], None, RT))
    assert parsed.cni_version == "1.0.0"


@pytest.mark.parametrize(
    ("container_id", "ifname"), [("", "eth0"), ("-bad", "eth0"), ("ok", ""), ("ok", "a/b"), ("ok", "x" * 16)]
)
def test_add_validates_the_attachment(tmp_path: Path, bin_dir: Path, container_id: str, ifname: str) -> None:
    with pytest.raises(InvalidArgument):
        run(
            chain.add(
                Invoker((str(bin_dir),)),
                ResultCache(tmp_path),
                network({"type": "main"}),
                RuntimeConf(container_id, "/ns", ifname),
            )
        )
    assert fakeplugin.calls(bin_dir) == []


def test_check_needs_0_4_0_and_a_cached_result(tmp_path: Path, bin_dir: Path) -> None:
    from pycontainerd.errdefs import FailedPrecondition, Unimplemented

    cache = ResultCache(tmp_path)
    invoker = Invoker((str(bin_dir),))
    with pytest.raises(Unimplemented):
        run(chain.check(invoker, cache, network({"type": "main"}, version="0.3.1"), RT))
    net = network({"type": "main"}, {"type": "chained"})
    with pytest.raises(FailedPrecondition):
        run(chain.check(invoker, cache, net, RT))
    run(chain.add(invoker, cache, net, RT))
    fakeplugin.clear(bin_dir)
    run(chain.check(invoker, cache, net, RT))
    calls = fakeplugin.calls(bin_dir)
    assert [(c["plugin"], c["env"]["CNI_COMMAND"]) for c in calls] == [("main", "CHECK"), ("chained", "CHECK")]
    assert all(c["stdin"]["prevResult"]["ips"] for c in calls)
    fakeplugin.clear(bin_dir)
    no_check = parse_conflist(
        json.dumps(
            {"cniVersion": "1.0.0", "name": "testnet", "disableCheck": True, "plugins": [{"type": "main"}]}
        ).encode()
    )
    run(chain.check(invoker, cache, no_check, RT))
    assert fakeplugin.calls(bin_dir) == []


def test_version_and_status(bin_dir: Path) -> None:
    invoker = Invoker((str(bin_dir),))
    assert "1.0.0" in run(invoker.version("main"))
    assert fakeplugin.calls(bin_dir)[0]["env"]["CNI_COMMAND"] == "VERSION"
    fakeplugin.clear(bin_dir)
    run(chain.status(invoker, network({"type": "main"}, version="1.0.0")))
    assert fakeplugin.calls(bin_dir) == [], "no STATUS before 1.1.0"
    down = network(
        {"type": "main", "fake": {"fail_on": ["STATUS"], "error": {"code": 50, "msg": "daemon down"}}}, version="1.1.0"
    )
    with pytest.raises(PluginUnavailable, match="daemon down"):
        run(chain.status(invoker, down))
    assert fakeplugin.calls(bin_dir)[0]["env"]["CNI_COMMAND"] == "STATUS"


@pytest.mark.parametrize("key", [("net", "../x", "eth0"), ("", "id", "eth0"), ("net", "id", ".hidden")])
def test_cache_keys_cannot_escape(tmp_path: Path, key: tuple[str, str, str]) -> None:
    cache = ResultCache(tmp_path / "cache")
    with pytest.raises(ValueError, match="bad cache key"):
        cache.path(*key)
    assert cache.get(*key) is None
    cache.delete(*key)
