"""Fake CNI plugins: real executables that speak the plugin protocol and record each call.

``install(bin_dir, "bridge")`` writes an executable ``bin_dir/bridge``. Every run appends
``{"plugin", "env": {CNI_*}, "stdin": <request config>}`` to ``bin_dir/calls.jsonl`` and then
does what the request config's ``fake`` object says (the config is the test's to write):

- ``result``: print this ADD result (``cniVersion`` filled in); otherwise ADD prints the
  ``prevResult`` unchanged, or, first in a chain, an interface ``CNI_IFNAME`` in
  ``CNI_NETNS`` with ``fake.ip`` (default 10.22.0.2/24);
- ``error`` (``{code, msg, details}``) on the commands in ``fail_on`` (default all but
  VERSION): print it on ``error_stream`` (stdout) and exit 1; ``raw_stdout``/``raw_stderr``
  with ``exit`` for malformed failures;
- ``sleep``: seconds to sleep first (for timeouts).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

SCRIPT = r"""#!/usr/bin/python3 -IS
import json, os, sys, time
here = os.path.dirname(os.path.abspath(__file__))
command = os.environ.get("CNI_COMMAND", "")
raw = sys.stdin.read()
try:
    conf = json.loads(raw)
except ValueError:
    conf = {}
env = {k: v for k, v in os.environ.items() if k.startswith("CNI_")}
with open(os.path.join(here, "calls.jsonl"), "a") as log:
    log.write(json.dumps({"plugin": os.path.basename(__file__), "env": env, "stdin": conf}) + "\n")
fake = conf.get("fake", {})
time.sleep(fake.get("sleep", 0))
if command == "VERSION":
    print(json.dumps({"cniVersion": conf.get("cniVersion"), "supportedVersions": fake.get("versions", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])}))
    sys.exit(0)
if command in fake.get("fail_on", ["ADD", "DEL", "CHECK", "STATUS"]):
    if "raw_stdout" in fake or "raw_stderr" in fake or "exit" in fake:
        sys.stdout.write(fake.get("raw_stdout", ""))
        sys.stderr.write(fake.get("raw_stderr", ""))
        sys.exit(fake.get("exit", 1))
    if "error" in fake:
        err = dict(fake["error"], cniVersion=conf.get("cniVersion"))
        stream = sys.stderr if fake.get("error_stream") == "stderr" else sys.stdout
        stream.write(json.dumps(err))
        sys.exit(1)
if command != "ADD":
    sys.exit(0)
if "result" in fake:
    result = dict(fake["result"])
    result.setdefault("cniVersion", conf.get("cniVersion"))
elif "prevResult" in conf:
    result = conf["prevResult"]
else:
    modern = not conf.get("cniVersion", "1.0.0").startswith("0.")
    ip = {"address": fake.get("ip", "10.22.0.2/24"), "gateway": fake.get("gateway", "10.22.0.1"), "interface": 0}
    if not modern:
        ip["version"] = "6" if ":" in ip["address"] else "4"
    result = {
        "cniVersion": conf.get("cniVersion"),
        "interfaces": [{"name": os.environ.get("CNI_IFNAME"), "mac": "0a:58:0a:16:00:02", "sandbox": os.environ.get("CNI_NETNS")}],
        "ips": [ip],
        "dns": {},
    }
print(json.dumps(result))
"""


def install(bin_dir: Path, *names: str) -> None:
    """Write fake plugins called ``names`` into ``bin_dir``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = SCRIPT.replace("/usr/bin/python3", sys.executable, 1)
    for name in names:
        path = bin_dir / name
        path.write_text(script)
        path.chmod(0o755)


def calls(bin_dir: Path) -> list[dict[str, Any]]:
    """Every recorded invocation, oldest first."""
    log = bin_dir / "calls.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def clear(bin_dir: Path) -> None:
    """Forget the recorded invocations."""
    log = bin_dir / "calls.jsonl"
    if log.exists():
        os.unlink(log)


def write_json(path: Path, doc: object) -> Path:
    """Write a config file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path
