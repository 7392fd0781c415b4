"""What ``containerd-shim-pyrunc-v2 start`` prints for each protocol (the forking is faked)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from pycontainerd.runc_shim import main as shim_main
from pycontainerd.runtime.v2.shim import PROTOCOL_ENV, parse_start_output


class Forks:
    """Stands in for the template and the direct fork, recording the requests."""

    def __init__(self, template_reply: dict[str, Any] | None) -> None:
        self.template_reply = template_reply
        self.template: list[dict[str, object]] = []
        self.direct: list[dict[str, object]] = []

    def ask_template(self, request: dict[str, object]) -> dict[str, Any] | None:
        self.template.append(request)
        return self.template_reply

    def fork_directly(self, request: dict[str, object]) -> dict[str, Any]:
        self.direct.append(request)
        return {"ok": True, "pid": 4321, "protocol": request["protocol"]}


def start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, forks: Forks, env: str
) -> tuple[int, str]:
    bundle = tmp_path / "bundle"
    bundle.mkdir(exist_ok=True)
    monkeypatch.chdir(bundle)
    monkeypatch.setattr(shim_main, "SOCKET_DIR", str(tmp_path / "s"))
    monkeypatch.setattr(shim_main, "_ask_template", forks.ask_template)
    monkeypatch.setattr(shim_main, "_fork_directly", forks.fork_directly)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    monkeypatch.delenv("PYRUNC_NO_TEMPLATE", raising=False)
    if env:
        monkeypatch.setenv(PROTOCOL_ENV, env)
    else:
        monkeypatch.delenv(PROTOCOL_ENV, raising=False)
    args = shim_main.parse_args(["-namespace", "ns", "-address", "/run/d.sock", "-id", "t1", "start"])
    code = shim_main.start(args)
    return code, capsys.readouterr().out


def test_grpc_start_prints_containerd_bootstrap(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    forks = Forks({"ok": True, "pid": 99, "protocol": "grpc"})
    code, out = start(monkeypatch, capsys, tmp_path, forks, "grpc")
    assert code == 0
    data = json.loads(out)
    assert (data["version"], data["protocol"]) == (3, "grpc")
    assert data["address"].startswith(str(tmp_path / "s") + "/"), "a plain socket path"
    assert forks.template[0]["protocol"] == "grpc" and forks.direct == []
    assert (tmp_path / "bundle" / "shim.pid").read_text() == "99"
    boot = parse_start_output(out.encode())
    assert (boot.protocol, boot.version, boot.socket_path) == ("grpc", 3, data["address"])


def test_ttrpc_stays_a_bare_address_on_its_own_socket(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out = start(monkeypatch, capsys, tmp_path, Forks({"ok": True, "pid": 98}), "")
    assert code == 0 and out.startswith("unix://")
    ttrpc_socket = out.removeprefix("unix://")
    code, out = start(monkeypatch, capsys, tmp_path, Forks({"ok": True, "pid": 97, "protocol": "grpc"}), "grpc")
    assert json.loads(out)["address"] != ttrpc_socket, "a group's ttrpc and gRPC shims never share a socket"


def test_a_template_that_only_knows_ttrpc_is_bypassed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    forks = Forks({"ok": True, "pid": 0})  # an older template: no "protocol" in its answer
    code, out = start(monkeypatch, capsys, tmp_path, forks, "grpc")
    assert code == 0 and json.loads(out)["protocol"] == "grpc"
    assert len(forks.direct) == 1, "forked here instead"
    assert (tmp_path / "bundle" / "shim.pid").read_text() == "4321"


def test_unknown_protocol_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    forks = Forks(None)
    code, out = start(monkeypatch, capsys, tmp_path, forks, "smoke-signals")
    assert code == 1 and out == ""
    assert forks.template == [] and forks.direct == []
