"""``pycontainerd publish``: the publish hook shims exec, forwarding to the ttrpc socket."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from google.protobuf import any_pb2

from pycontainerd.api.containerd.events import task_pb2
from tests.support.daemon import CTR, DaemonProcess

pytestmark = pytest.mark.integration


def test_publish_reaches_subscribers(daemon: DaemonProcess) -> None:
    event = task_pb2.TaskOOM(container_id="oom-victim")
    payload = any_pb2.Any(type_url="containerd.events.TaskOOM", value=event.SerializeToString()).SerializeToString()
    with subprocess.Popen([CTR, "-a", str(daemon.address), "events"], stdout=subprocess.PIPE, text=True) as events:
        try:
            time.sleep(1.0)  # let ctr events subscribe before anything is published
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pycontainerd",
                    "--address",
                    f"{daemon.address}.ttrpc",
                    "publish",
                    "--topic",
                    "/tasks/oom",
                    "--namespace",
                    "pub-ns",
                ],
                input=payload,
                capture_output=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            time.sleep(0.5)
        finally:
            events.terminate()
        text, _ = events.communicate(timeout=10)
    assert "pub-ns" in text and "/tasks/oom" in text and "oom-victim" in text


def test_publish_rejects_bad_topic(daemon: DaemonProcess) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pycontainerd",
            "--address",
            f"{daemon.address}.ttrpc",
            "publish",
            "--topic",
            "no-slash",
            "--namespace",
            "ns",
        ],
        input=b"",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert b"must start with" in result.stderr
