"""What can go wrong between the runtime and its CNI plugins, as ``errdefs`` kinds.

Each class is also one of the daemon-wide kinds (``errdefs``), so the CRI servicer maps it to
a gRPC code without knowing about CNI: a missing or broken network config is a precondition
the node admin must fix, a plugin that fails is "unknown" unless it asked to be retried.
Messages follow go-cni and libcni, because operators grep for them
("cni plugin not initialized", ``plugin type="bridge" name="net" failed (add): ...``).
"""

from __future__ import annotations

from pycontainerd.errdefs import (
    ContainerdError,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    NotFound,
    Unavailable,
    Unknown,
)

# Well-known plugin error codes (CNI spec, section 5 "Error").
CODE_INCOMPATIBLE_VERSION = 1
CODE_UNSUPPORTED_FIELD = 2
CODE_UNKNOWN_CONTAINER = 3
CODE_INVALID_ENVIRONMENT = 4
CODE_IO_FAILURE = 5
CODE_DECODE_FAILURE = 6
CODE_INVALID_CONFIG = 7
CODE_TRY_AGAIN_LATER = 11
CODE_NOT_AVAILABLE = 50
CODE_NOT_AVAILABLE_LIMITED = 51


class CNIError(ContainerdError):
    """Base of every error raised by :mod:`pycontainerd.cni`; not raised directly."""

    default_message = "cni error"


class NotInitialized(CNIError, FailedPrecondition):
    """No usable network configuration is loaded (go-cni's ``ErrCNINotInitialized``)."""

    default_message = "cni plugin not initialized"


class InvalidConfig(CNIError, FailedPrecondition):
    """A network configuration file cannot be used; the message names the file."""

    default_message = "invalid cni config"


class PluginNotFound(CNIError, NotFound):
    """A plugin binary named by a config ``type`` is in none of the bin dirs."""

    default_message = "cni plugin not found"


class InvalidResult(CNIError, Internal):
    """A plugin printed a result that does not follow the spec."""

    default_message = "invalid cni result"


class PluginError(CNIError, Unknown):
    """A plugin exited non-zero; ``code``/``msg``/``details`` come from its error JSON.

    Attributes:
        plugin: the plugin ``type`` (binary name).
        network: the network (config list) name.
        command: ``ADD``, ``DEL``, ``CHECK``, ``STATUS`` or ``VERSION``.
        code: the CNI error code (0 when the plugin printed no parsable error).
        msg: the short message.
        details: the longer message, often empty.
    """

    def __init__(self, *, plugin: str, network: str, command: str, code: int, msg: str, details: str = "") -> None:
        self.plugin = plugin
        self.network = network
        self.command = command
        self.code = code
        self.msg = msg
        self.details = details
        text = f"plugin type={plugin!r} name={network!r} failed ({command.lower()}): "
        if code:
            text += f"code {code}: "
        text += msg
        if details:
            text += f"; {details}"
        super().__init__(text)

    @property
    def retryable(self) -> bool:
        """Whether the plugin said "try again later" (code 11)."""
        return self.code == CODE_TRY_AGAIN_LATER


class PluginUnavailable(PluginError, Unavailable):
    """A plugin said it cannot serve ADD now (code 11, 50 or 51)."""


class PluginTimeout(PluginError, DeadlineExceeded):
    """A plugin did not finish within the exec timeout and was killed."""


def plugin_error(*, plugin: str, network: str, command: str, code: int, msg: str, details: str = "") -> PluginError:
    """The :class:`PluginError` subclass that fits ``code``."""
    kind = (
        PluginUnavailable
        if code in (CODE_TRY_AGAIN_LATER, CODE_NOT_AVAILABLE, CODE_NOT_AVAILABLE_LIMITED)
        else PluginError
    )
    return kind(plugin=plugin, network=network, command=command, code=code, msg=msg, details=details)
