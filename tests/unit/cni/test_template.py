"""conf_template rendering (the Go template subset) and the default bridge config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pycontainerd.cni.config import load_file
from pycontainerd.cni.errors import InvalidConfig
from pycontainerd.cni.template import default_bridge_conflist, render_file, render_template, write_conf_file

# containerd's own test template (internal/cri/server/update_runtime_config_test.go) and its expected output.
CONTAINERD_TEMPLATE = """{
  "name": "test-pod-network",
  "cniVersion": "1.0.0",
  "plugins": [{
    "type": "ptp",
    "mtu": 1460,
    "ipam": {
      "type": "host-local",
      "subnet": "{{.PodCIDR}}",
      "ranges": [{{range $i, $range := .PodCIDRRanges}}{{if $i}}, {{end}}[{"subnet": "{{$range}}"}]{{end}}],
      "routes": [{{range $i, $route := .Routes}}{{if $i}}, {{end}}{"dst": "{{$route}}"}{{end}}]
    }
  }]
}"""


def test_containerd_template_dual_stack() -> None:
    out = json.loads(render_template(CONTAINERD_TEMPLATE, "10.0.0.0/24, 2001:4860:4860::/64"))
    ipam = out["plugins"][0]["ipam"]
    assert ipam["subnet"] == "10.0.0.0/24"
    assert ipam["ranges"] == [[{"subnet": "10.0.0.0/24"}], [{"subnet": "2001:4860:4860::/64"}]]
    assert ipam["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]


def test_template_single_stack_and_other_forms() -> None:
    text = "{{/* comment */}}[{{- range .Routes -}} {{.}} {{- end -}}]{{if .PodCIDR}}x{{else}}y{{end}}{{range $r := .PodCIDRRanges}}<{{$r}}>{{end}}"
    assert render_template(text, "fd00::/64") == "[::/0]x<fd00::/64>"


@pytest.mark.parametrize(
    "text",
    [
        "{{.Nope}}",
        '{{printf "%s" .PodCIDR}}',
        "{{range .PodCIDR}}{{end}}",
        "{{if .PodCIDR}}",
        "{{end}}",
        "{{$x}}",
        "{{else}}",
    ],
)
def test_unsupported_or_broken_templates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"unsupported|unknown|undefined|missing|without|outside|non-list"):
        render_template(text, "10.0.0.0/24")


def test_bad_cidr() -> None:
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/33"):
        render_template("{{.PodCIDR}}", "10.0.0.0/33")
    with pytest.raises(ValueError, match="no pod CIDR"):
        default_bridge_conflist("")


def test_default_bridge_conflist(tmp_path: Path) -> None:
    path = write_conf_file(tmp_path / "net.d", default_bridge_conflist("10.77.0.0/16,fd77::/64", ipam_data_dir="/x"))
    assert path.name == "10-containerd-net.conflist"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    net = load_file(path)
    assert net.plugin_types == ("bridge", "portmap")
    bridge = net.plugins[0].conf
    assert bridge["isGateway"] and bridge["ipMasq"] and bridge["hairpinMode"]
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.77.0.0/16"}], [{"subnet": "fd77::/64"}]]
    assert bridge["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    assert bridge["ipam"]["dataDir"] == "/x"
    assert net.plugins[1].capabilities == {"portMappings"}


def test_write_refuses_an_invalid_config(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig):
        write_conf_file(tmp_path, '{"name": "x"}')
    assert list(tmp_path.iterdir()) == []


def test_render_file_names_the_template(tmp_path: Path) -> None:
    bad = tmp_path / "tmpl"
    bad.write_text("{{.Bad}}")
    with pytest.raises(InvalidConfig, match="tmpl"):
        render_file(bad, "10.0.0.0/24")
    with pytest.raises(InvalidConfig, match="missing"):
        render_file(tmp_path / "missing", "10.0.0.0/24")
