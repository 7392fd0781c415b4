"""Runtimes: how tasks (running containers) are created and driven."""
