"""The image model: indexes, manifests and configs (OCI and Docker schema 2), platform
matching, and unpacking an image's layers into a chain of snapshots keyed by chain ID.

``ctr`` 1.6 walks images itself; this is the daemon-side model the Transfer service and CRI
use (pull, import, run).
"""
