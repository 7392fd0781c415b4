"""Diffs: applying a layer blob onto mounts (unpack) and, later, creating one from two mounts."""
