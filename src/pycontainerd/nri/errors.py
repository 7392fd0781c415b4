"""Errors of the NRI adaptation and SDK, one family under :class:`NRIError`."""

from __future__ import annotations


class NRIError(Exception):
    """Base of every NRI failure."""


class PluginError(NRIError):
    """A plugin answered a request with an error; the pod or container operation fails.

    Attributes:
        plugin: The plugin's ``<index>-<name>``.
    """

    def __init__(self, plugin: str, message: str) -> None:
        self.plugin = plugin
        super().__init__(f"NRI plugin {plugin}: {message}")


class RegistrationError(NRIError):
    """A plugin did not register (in time, or validly), or its configuration failed."""


class ValidationError(NRIError):
    """A validator plugin rejected the merged adjustment of a container."""
