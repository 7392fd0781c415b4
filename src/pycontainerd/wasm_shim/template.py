"""The wasm shim's template process: the runc shim's template (:mod:`pycontainerd.runc_shim.zygote`)
with the wasm shim and wasmtime pre-imported, forking wasm shims.

Forked shims share its pages (the interpreter, protobuf, ttrpc, the ~30 MB libwasmtime
mapping) copy-on-write; their runners, forked from the shims, share them again. Its socket is
:data:`~pycontainerd.wasm_shim.main.TEMPLATE_SOCKET`; it exits after 60 s without requests.
"""

from __future__ import annotations

import os
import sys

from pycontainerd.runc_shim import zygote
from pycontainerd.wasm_shim import server
from pycontainerd.wasm_shim.main import TEMPLATE_SOCKET


def main() -> int:
    """Run the template (started detached by the first ``start``)."""
    os.chdir("/")  # never pin the directory (a bundle) we were started from
    zygote.serve_forever(sys.argv[1] if len(sys.argv) > 1 else TEMPLATE_SOCKET, fork=server.fork_shim)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
