"""Client-opened streams (containerd's Streaming service) that other services use by name."""
