"""The Python client library: talk to pycontainerd (or containerd 2.x) over its socket."""
