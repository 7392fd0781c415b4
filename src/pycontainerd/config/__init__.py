"""The daemon configuration: containerd's ``config.toml`` (version 2) model.

:mod:`model` holds the dataclasses and defaults, :mod:`decode` turns TOML tables into them
(warning on unknown keys, failing on bad values with the key's dotted name), :mod:`loader`
reads a file with its ``imports`` and applies command-line overrides, and :mod:`render`
prints a config back as TOML (``pycontainerd config default`` / ``config dump``).
"""

from pycontainerd.config.loader import load as load
from pycontainerd.config.model import Config as Config
from pycontainerd.config.model import ConfigError as ConfigError

__all__ = ["Config", "ConfigError", "load"]
