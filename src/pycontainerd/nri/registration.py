"""Registration of NRI as a daemon plugin (``io.containerd.nri.v1.nri``), as in containerd 2.

The plugin only builds the :class:`~.adaptation.Adaptation` from ``[plugins."io.containerd.nri.v1.nri"]``;
the CRI plugin, which knows the pods and containers, registers itself as its runtime and starts
it once its state is recovered (plugins then synchronize with every pod that survived a restart).
With ``disable = true`` the plugin is skipped and the CRI plugin runs without NRI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration, SkipPlugin

from .config import NRIConfig

if TYPE_CHECKING:
    from .adaptation import Adaptation


async def _init(ctx: InitContext) -> Adaptation:
    from .adaptation import Adaptation

    config = ctx.config if isinstance(ctx.config, NRIConfig) else NRIConfig()
    if config.disable:
        raise SkipPlugin("NRI is disabled in config.toml")
    adaptation = Adaptation(config)
    ctx.exports["socket_path"] = "" if config.disable_connections else config.socket_path
    ctx.exports["plugin_path"] = config.plugin_path
    ctx.on_close.append(adaptation.stop)
    return adaptation


REGISTRATION = Registration(type=types.NRI, id="nri", init=_init, config=NRIConfig)
