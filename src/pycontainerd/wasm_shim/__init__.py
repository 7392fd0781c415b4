"""containerd-shim-wasmtime-v1: a runtime v2 shim running WebAssembly (WASI) modules with wasmtime.

Runtime name ``io.containerd.wasmtime.v1``. Built on the runc shim's framework (ttrpc Task
server, reaper, event publisher, stdio pipes, process state machine, the template that forks
shims), with wasm in place of runc:

* :mod:`main` is the binary: ``start`` / ``delete``, grouping of containers into one shim.
* :mod:`template` pre-imports the shim and wasmtime and forks shims on request.
* :mod:`server` is the serving process; :mod:`task` its Task API.
* :mod:`spec` turns the OCI spec into a :class:`~spec.RunPlan` (argv, env, preopens, module).
* :mod:`runner` is the body of the process forked per container: it compiles the module
  (cached by digest) and runs it; signals reach it as they would a runc container.
* :mod:`layers` reads modules that are image layers (``application/wasm``) from the
  daemon's content store, as runwasi does.
"""
