"""The container process: command line, environment, working directory, terminal, the base spec."""

from __future__ import annotations

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri.spec import ImageConfig
from pycontainerd.cri.spec.process import merge_env, process_args
from pycontainerd.errdefs import InvalidArgument
from tests.unit.cri.spec.helpers import build, container_config, sandbox_config

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.mark.parametrize(
    ("command", "args", "entrypoint", "cmd", "expected"),
    [
        # containerd's TestContainerSpecCommand table.
        ([], [], ["ep"], ["c"], ["ep", "c"]),
        (["cmd"], [], ["ep"], ["c"], ["cmd"]),  # a command drops the image's cmd
        ([], ["a"], ["ep"], ["c"], ["ep", "a"]),  # args replace the cmd only
        (["cmd"], ["a"], ["ep"], ["c"], ["cmd", "a"]),
        ([], [], [""], ["c"], ["c"]),  # an entrypoint of [""] is none
        ([], [], [], ["c"], ["c"]),
    ],
)
def test_command_merge(
    command: list[str], args: list[str], entrypoint: list[str], cmd: list[str], expected: list[str]
) -> None:
    config = api.ContainerConfig(command=command, args=args)
    assert process_args(config, ImageConfig(entrypoint=tuple(entrypoint), cmd=tuple(cmd))) == expected


def test_nothing_to_run_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="no command"):
        process_args(api.ContainerConfig(), ImageConfig())


def test_general_spec_matches_containerd() -> None:
    spec = build()
    assert spec["root"] == {"path": "rootfs"}
    proc = spec["process"]
    assert proc["args"] == ["test", "command", "test", "args"]
    assert proc["cwd"] == "test-cwd"
    assert proc["noNewPrivileges"] is True  # no_new_privs in the security context
    assert proc["env"] == [
        DEFAULT_PATH,
        "HOSTNAME=test-hostname",
        "ik1=iv1",
        "ik2=iv2",
        "ik3=iv3=iv3bis",
        "ik4=iv4=iv4bis=boop",
        "k1=v1",
        "k2=v2",
        "k3=v3=v3bis",
        "k4=v4=v4bis=foop",
    ]
    # CRI clears containerd's default rlimits, AppArmor and seccomp; no /run mount.
    assert "rlimits" not in proc and "apparmorProfile" not in proc and "seccomp" not in spec["linux"]
    assert all(m["destination"] != "/run" for m in spec["mounts"])
    assert "hostname" not in spec  # containers share the pod's UTS namespace


def test_new_privileges_unless_asked() -> None:
    config = container_config()
    config.linux.security_context.no_new_privs = False
    assert "noNewPrivileges" not in build(config)["process"]


def test_env_overrides_and_unsets() -> None:
    assert merge_env(["A=1", "B=2"], ["B=3", "C=4", "A"]) == ["B=3", "C=4"]
    config = container_config()
    config.envs.append(api.KeyValue(key="ik1", value=b"over"))
    env = build(config)["process"]["env"]
    assert "ik1=over" in env and "ik1=iv1" not in env


@pytest.mark.parametrize("tty", [True, False])
def test_tty(tty: bool) -> None:
    config = container_config()
    config.tty = tty
    proc = build(config)["process"]
    assert proc.get("terminal", False) is tty
    assert ("TERM=xterm" in proc["env"]) is tty


def test_image_path_replaces_the_default_path() -> None:
    image = ImageConfig(entrypoint=("/e",), env=("PATH=/usr/local/bin/games",))
    env = build(image=image)["process"]["env"]
    assert "PATH=/usr/local/bin/games" in env and DEFAULT_PATH not in env


def test_working_dir_falls_back_to_the_image_then_root() -> None:
    config = container_config()
    config.working_dir = ""
    assert build(config)["process"]["cwd"] == "/workspace"
    assert build(config, image=ImageConfig(entrypoint=("/e",)))["process"]["cwd"] == "/"


@pytest.mark.parametrize(
    ("hostname", "network", "expected"),
    [
        ("test-hostname", api.POD, "HOSTNAME=test-hostname"),
        ("test-hostname", api.NODE, "HOSTNAME=test-hostname"),
        ("", api.NODE, "HOSTNAME=node-1"),  # the node's name
    ],
)
def test_hostname_env(hostname: str, network: api.NamespaceMode, expected: str) -> None:
    sandbox = sandbox_config()
    sandbox.hostname = hostname
    sandbox.linux.security_context.namespace_options.network = network
    assert expected in build(sandbox=sandbox)["process"]["env"]


def test_readonly_rootfs() -> None:
    config = container_config()
    config.linux.security_context.readonly_rootfs = True
    assert build(config)["root"] == {"path": "rootfs", "readonly": True}


def test_non_utf8_env_value_survives() -> None:
    config = container_config()
    config.envs.append(api.KeyValue(key="RAW", value=b"\xff"))
    assert "RAW=\udcff" in build(config)["process"]["env"]
