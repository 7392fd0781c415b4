#!/usr/bin/env python3
"""Generate the Python modules of pycontainerd's wire contract from ``proto/``.

Every ``.proto`` below ``proto/`` is compiled with grpcio-tools into
``src/pycontainerd/api/``; the generated imports (``from containerd.types import ...``)
are rewritten to live under ``pycontainerd.api`` so that the package never claims a
top-level module name such as ``containerd``.

Usage::

    python scripts/gen_protos.py            # regenerate in place
    python scripts/gen_protos.py --check    # exit 1 if the checked-in code is stale
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_DIR = REPO / "proto"
API_DIR = REPO / "src" / "pycontainerd" / "api"
PACKAGE = "pycontainerd.api"
API_INIT = '"""Generated protobuf and gRPC modules of the wire contract (see scripts/gen_protos.py)."""\n'


def _include_dirs() -> list[Path]:
    """Directories protoc searches besides ``proto/``: well-known types and google.rpc."""
    spec = importlib.util.find_spec("grpc_tools")
    if spec is None or spec.origin is None:
        raise SystemExit("grpcio-tools is not installed: pip install -e '.[dev]'")
    dirs = [Path(spec.origin).parent / "_proto"]
    rpc = importlib.util.find_spec("google.rpc.status_pb2")
    if rpc is not None and rpc.origin is not None:
        # googleapis-common-protos ships status.proto next to status_pb2.py.
        dirs.append(Path(rpc.origin).parent.parent.parent)
    return dirs


def _roots() -> list[str]:
    return sorted(p.name for p in PROTO_DIR.iterdir() if p.is_dir())


def generate(out: Path) -> None:
    """Compile every proto under ``proto/`` into ``out`` and fix up the imports."""
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    if not protos:
        raise SystemExit("no .proto files under proto/")
    out.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}"]
    args += [f"-I{d}" for d in _include_dirs()]
    args += [f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", *protos]
    subprocess.run(args, check=True, cwd=PROTO_DIR, timeout=300)

    roots = "|".join(re.escape(r) for r in _roots())
    pattern = re.compile(rf"^(from|import) ({roots})(\.| )", re.MULTILINE)
    for path in sorted(out.rglob("*.py*")):
        if path.suffix not in (".py", ".pyi"):
            continue
        text = path.read_text()
        fixed = pattern.sub(rf"\1 {PACKAGE}.\2\3", text)
        if fixed != text:
            path.write_text(fixed)
    # Every directory becomes a package so that the modules import normally.
    for directory in sorted({out, *(p.parent for p in out.rglob("*.py"))}):
        init = directory / "__init__.py"
        if not init.exists():
            init.write_text(API_INIT if directory == out else "")


def _compare(a: Path, b: Path) -> list[str]:
    diffs: list[str] = []
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])

    def walk(c: filecmp.dircmp[str], rel: str) -> None:
        diffs.extend(f"{rel}{n} (only in checked-in)" for n in c.left_only)
        diffs.extend(f"{rel}{n} (missing from checked-in)" for n in c.right_only)
        for name in c.common_files:
            if (Path(c.left) / name).read_bytes() != (Path(c.right) / name).read_bytes():
                diffs.append(f"{rel}{name} (differs)")
        for name, sub in c.subdirs.items():
            walk(sub, f"{rel}{name}/")

    walk(cmp, "")
    return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if src/pycontainerd/api is stale")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / "api"
            generate(fresh)
            diffs = _compare(API_DIR, fresh) if API_DIR.exists() else ["api/ does not exist"]
        if diffs:
            print("generated code is stale; run scripts/gen_protos.py:", *diffs, sep="\n  ")
            return 1
        print("generated code is up to date")
        return 0
    if API_DIR.exists():
        shutil.rmtree(API_DIR)
    generate(API_DIR)
    print(f"generated {sum(1 for _ in API_DIR.rglob('*_pb2.py'))} modules into {API_DIR.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
