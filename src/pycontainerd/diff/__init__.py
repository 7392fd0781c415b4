"""Diffs: applying a layer blob onto mounts (unpack) and creating one from two sets of mounts.

* ``apply.py``, ``compression.py``, ``create.py``, ``layer.py``: the disk work (in process).
* ``walking.py``: the built-in differ over the daemon's content store (containerd's "walking").
* ``plugin.py``: its registration, and the diff service's ordered differs (``default`` list)
  that the Diff API and every unpack go through.
* ``proxy.py``: a differ served by another process (``[proxy_plugins]`` of type ``diff``);
  ``service.py`` serves one, reading layers from the daemon's Content API.
"""
