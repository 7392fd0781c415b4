"""Plugins: typed registrations initialised in the order of what they require.

A plugin is data (:class:`Registration`: a type URI, an ID, the types it requires, a config
class and an init function). :mod:`builtins` is the explicit list of what ships with
pycontainerd; :func:`graph.ordered` sorts registrations so that every plugin starts after the
plugins of the types it requires, and ``server`` walks that order, giving each plugin its own
``<root>/<type>.<id>`` and ``<state>/<type>.<id>`` directories.
"""

from pycontainerd.plugin.graph import ordered as ordered
from pycontainerd.plugin.registration import InitContext as InitContext
from pycontainerd.plugin.registration import Plugin as Plugin
from pycontainerd.plugin.registration import PluginSet as PluginSet
from pycontainerd.plugin.registration import Registration as Registration
from pycontainerd.plugin.registration import SkipPlugin as SkipPlugin

__all__ = ["InitContext", "Plugin", "PluginSet", "Registration", "SkipPlugin", "ordered"]
