"""Sandboxes: the controllers that run pod-like groups of containers."""
