"""Parsing results of each spec version, merging networks, and picking the pod IPs."""

from __future__ import annotations

import ipaddress

import pytest

from pycontainerd.cni.errors import InvalidResult
from pycontainerd.cni.results import DNS, PluginResult, Result, select_pod_ips

RESULT_031 = {
    "cniVersion": "0.3.1",
    "interfaces": [
        {"name": "cni0", "mac": "aa:aa:aa:aa:aa:aa"},
        {"name": "veth1", "mac": "bb:bb:bb:bb:bb:bb"},
        {"name": "eth0", "mac": "cc:cc:cc:cc:cc:cc", "sandbox": "/run/netns/x"},
    ],
    "ips": [
        {"version": "4", "interface": 2, "address": "10.88.0.5/16", "gateway": "10.88.0.1"},
        {"version": "6", "interface": 2, "address": "fd00::5/64", "gateway": "fd00::1"},
    ],
    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::1"}],
    "dns": {"nameservers": ["10.88.0.1"], "domain": "cluster.local", "search": ["svc"], "options": ["ndots:5"]},
}

RESULT_100 = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "eth0", "mac": "cc:cc:cc:cc:cc:cc", "mtu": 1450, "sandbox": "/ns", "pciID": "0000:01:00.0"}
    ],
    "ips": [{"interface": 0, "address": "10.1.0.7/24", "gateway": "10.1.0.1"}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1", "mtu": 1400, "priority": 10, "table": 100, "scope": 0}],
    "dns": {},
}


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_parse_03x_04(version: str) -> None:
    res = PluginResult.from_dict({**RESULT_031, "cniVersion": version})
    assert res.cni_version == version
    assert [i.name for i in res.interfaces] == ["cni0", "veth1", "eth0"]
    assert res.interfaces[2].sandbox == "/run/netns/x"
    assert res.ips[0].address == ipaddress.ip_interface("10.88.0.5/16")
    assert res.ips[0].gateway == ipaddress.ip_address("10.88.0.1")
    assert res.ips[1].interface == 2
    assert res.routes[1].gw == ipaddress.ip_address("fd00::1")
    assert res.dns == DNS(("10.88.0.1",), "cluster.local", ("svc",), ("ndots:5",))


def test_parse_100_fields() -> None:
    res = PluginResult.from_dict(RESULT_100)
    assert res.interfaces[0].mtu == 1450
    assert res.interfaces[0].pci_id == "0000:01:00.0"
    route = res.routes[0]
    assert (route.mtu, route.priority, route.table, route.scope, route.advmss) == (1400, 10, 100, 0, None)


def test_round_trip_between_versions() -> None:
    res = PluginResult.from_dict(RESULT_031)
    assert res.to_dict() == RESULT_031
    as_100 = res.to_dict("1.0.0")
    assert as_100["cniVersion"] == "1.0.0"
    assert all("version" not in ip for ip in as_100["ips"])
    back = PluginResult.from_dict(RESULT_100).to_dict("0.4.0")
    assert back["ips"][0]["version"] == "4"
    assert "mtu" not in back["interfaces"][0] and "mtu" not in back["routes"][0]
    assert PluginResult.from_dict(RESULT_100).to_dict() == RESULT_100


def test_default_version_when_the_result_has_none() -> None:
    assert PluginResult.from_dict({"ips": []}, "0.4.0").cni_version == "0.4.0"


@pytest.mark.parametrize(
    "raw",
    [
        [],
        {"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24"}},
        {"cniVersion": "1.0.0", "ips": [{"address": "300.0.0.1/24"}]},
        {"cniVersion": "1.0.0", "ips": [{"gateway": "10.0.0.1"}]},
        {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24", "interface": -1}]},
        {"cniVersion": "1.0.0", "interfaces": [{"mac": "aa"}]},
        {"cniVersion": "1.0.0", "routes": [{"gw": "10.0.0.1"}]},
        {"cniVersion": "1.0.0", "dns": {"nameservers": "8.8.8.8"}},
        {"cniVersion": "1.0.0", "ips": "10.0.0.2/24"},
    ],
)
def test_invalid_results(raw: object) -> None:
    with pytest.raises(InvalidResult):
        PluginResult.from_dict(raw)


def test_invalid_json() -> None:
    with pytest.raises(InvalidResult):
        PluginResult.from_bytes(b"{nope", "1.0.0")


def loopback() -> PluginResult:
    return PluginResult.from_dict(
        {
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "lo", "sandbox": "/ns"}],
            "ips": [
                {"version": "4", "interface": 0, "address": "127.0.0.1/8"},
                {"version": "6", "interface": 0, "address": "::1/128"},
            ],
        }
    )


def test_merge_like_go_cni() -> None:
    merged = Result.merge([loopback(), PluginResult.from_dict(RESULT_031)])
    assert set(merged.interfaces) == {"lo", "cni0", "veth1", "eth0"}
    assert [str(ip) for ip, _ in merged.interfaces["lo"].ips] == ["127.0.0.1", "::1"]
    eth0 = merged.interfaces["eth0"]
    assert [(str(ip), str(gw)) for ip, gw in eth0.ips] == [("10.88.0.5", "10.88.0.1"), ("fd00::5", "fd00::1")]
    assert eth0.mac == "cc:cc:cc:cc:cc:cc" and eth0.sandbox == "/run/netns/x"
    assert merged.interfaces["cni0"].ips == ()
    assert len(merged.routes) == 2 and len(merged.dns) == 2
    assert merged.pod_ips() == ("10.88.0.5", ["fd00::5"])


def test_ip_without_interface_index_goes_to_eth0() -> None:
    res = PluginResult.from_dict({"cniVersion": "1.0.0", "ips": [{"address": "10.3.0.2/24"}]})
    merged = Result.merge([res])
    assert merged.pod_ips() == ("10.3.0.2", [])


def test_merge_rejects_an_index_out_of_range() -> None:
    res = PluginResult.from_dict(
        {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}], "ips": [{"address": "10.3.0.2/24", "interface": 1}]}
    )
    with pytest.raises(InvalidResult):
        Result.merge([res])


def test_no_pod_ip_is_an_error() -> None:
    with pytest.raises(InvalidResult, match="eth0"):
        Result.merge([loopback()]).pod_ips()


@pytest.mark.parametrize(
    ("ips", "preference", "expected"),
    [
        (["10.0.0.1"], "ipv6", ("10.0.0.1", [])),
        (["fd00::1", "10.0.0.1", "fd00::2"], "ipv4", ("10.0.0.1", ["fd00::1", "fd00::2"])),
        (["fd00::1", "10.0.0.1", "fd00::2"], "", ("10.0.0.1", ["fd00::1", "fd00::2"])),
        (["fd00::1", "10.0.0.1", "fd00::2"], "bogus", ("10.0.0.1", ["fd00::1", "fd00::2"])),
        (["10.0.0.1", "fd00::1", "10.0.0.2"], "ipv6", ("fd00::1", ["10.0.0.1", "10.0.0.2"])),
        (["fd00::1", "10.0.0.1"], "cni", ("fd00::1", ["10.0.0.1"])),
        (["fd00::1", "fd00::2"], "ipv4", ("fd00::1", ["fd00::2"])),
    ],
)
def test_select_pod_ips_like_containerd(ips: list[str], preference: str, expected: tuple[str, list[str]]) -> None:
    assert select_pod_ips(ips, preference) == expected


def test_result_persists_and_comes_back() -> None:
    merged = Result.merge([loopback(), PluginResult.from_dict(RESULT_031)])
    again = Result.from_dict(merged.to_dict())
    assert again == merged
    assert merged.to_dict()["interfaces"]["eth0"]["ips"][0] == {"ip": "10.88.0.5", "gateway": "10.88.0.1"}
