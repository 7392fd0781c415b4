"""Prometheus metrics: a small registry and the text exposition format."""
