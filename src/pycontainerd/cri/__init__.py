"""The Kubernetes CRI plugin (``io.containerd.grpc.v1.cri``): RuntimeService and ImageService on the daemon's socket.

Layout, as containerd's ``internal/cri``:

- :mod:`.config`: the plugin's config.toml table.
- :mod:`.service`: :class:`~.service.CRIService`, the state (pods, containers, name index) and
  recovery after a restart; pods run through the Sandbox API's controllers, containers as
  ordinary containers and tasks in the ``k8s.io`` namespace.
- one module per RPC family: :mod:`.sandboxes`, :mod:`.containers`, :mod:`.execs`,
  :mod:`.stats`, :mod:`.images`, :mod:`.status`; :mod:`.io` carries container stdio to the CRI
  log file and to attach sessions; :mod:`.logs` writes the CRI log format.
- :mod:`.spec`: OCI specs from CRI configs (pure); :mod:`.streaming`: the exec/attach/port-forward
  HTTP server; ``pycontainerd.cni``: pod networking.
- :mod:`.servicer`: the gRPC edge for ``runtime.v1`` and ``runtime.v1alpha2``. CRI messages are
  the plugin's domain language, so the modules above take protobuf messages; the servicer owns
  the gRPC context and error mapping.
"""
