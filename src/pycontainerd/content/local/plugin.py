"""Registration of the local content store (``io.containerd.content.v1.content``)."""

from __future__ import annotations

from pycontainerd.content.local.store import LocalStore
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration


def _init(ctx: InitContext) -> LocalStore:
    ctx.root.mkdir(parents=True, exist_ok=True, mode=0o711)
    ctx.exports["root"] = str(ctx.root)
    return LocalStore(ctx.root)


REGISTRATION = Registration(type=types.CONTENT, id="content", init=_init)
