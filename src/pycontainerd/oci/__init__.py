"""OCI runtime specs: the defaults containerd gives a container, and helpers to change them."""
