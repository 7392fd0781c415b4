"""What the server writes on the error stream: Kubernetes ``metav1.Status`` and port-forward errors.

Remote command v4 and v5 send the outcome as a JSON ``metav1.Status``; v1 to v3 send nothing on
success and the status message as plain text on failure. The JSON is encoded the way Go's
``encoding/json`` would encode the struct (field order, omitted empty fields, compact, HTML
characters escaped) so that clients see the bytes kubelet would send:

- success: ``{"metadata":{},"status":"Success"}``
- exit code 3: ``{"metadata":{},"status":"Failure","message":"command terminated with non-zero
  exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode",
  "details":{"causes":[{"reason":"ExitCode","message":"3"}]}}``
- any other error: reason ``InternalError``, code 500.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SUCCESS = "Success"
FAILURE = "Failure"
REASON_NON_ZERO_EXIT = "NonZeroExitCode"
CAUSE_EXIT_CODE = "ExitCode"
REASON_INTERNAL_ERROR = "InternalError"


@dataclass(frozen=True, slots=True)
class StatusCause:
    """One ``metav1.StatusCause``; ``reason`` is the Go field ``Type`` (JSON ``reason``)."""

    reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class Status:
    """The subset of ``metav1.Status`` the streaming protocols use."""

    status: str
    message: str = ""
    reason: str = ""
    causes: tuple[StatusCause, ...] = ()
    code: int = 0

    @property
    def ok(self) -> bool:
        """Whether this reports success."""
        return self.status == SUCCESS

    def to_json(self) -> bytes:
        """The JSON Go's ``json.Marshal(metav1.Status)`` produces for this value."""
        doc: dict[str, Any] = {"metadata": {}, "status": self.status}
        if self.message:
            doc["message"] = self.message
        if self.reason:
            doc["reason"] = self.reason
        if self.causes:
            doc["details"] = {"causes": [_cause_json(c) for c in self.causes]}
        if self.code:
            doc["code"] = self.code
        return go_json(doc)

    def to_text(self) -> bytes:
        """The pre-v4 error stream payload: nothing on success, else the message."""
        return b"" if self.ok else self.message.encode()


def _cause_json(cause: StatusCause) -> dict[str, str]:
    doc = {}
    if cause.reason:
        doc["reason"] = cause.reason
    if cause.message:
        doc["message"] = cause.message
    return doc


def success() -> Status:
    """The status of a command that exited 0 (or an attach that ended cleanly)."""
    return Status(SUCCESS)


def non_zero_exit(cmd: list[str], exit_code: int) -> Status:
    """The status of a command that exited with ``exit_code`` (worded as containerd's CRI does)."""
    detail = f"error executing command {go_list(cmd)}, exit code {exit_code}"
    return Status(
        FAILURE,
        message=f"command terminated with non-zero exit code: {detail}",
        reason=REASON_NON_ZERO_EXIT,
        causes=(StatusCause(CAUSE_EXIT_CODE, str(exit_code)),),
    )


def internal_error(message: str) -> Status:
    """``apierrors.NewInternalError``: any failure that is not an exit code."""
    return Status(
        FAILURE,
        message=f"Internal error occurred: {message}",
        reason=REASON_INTERNAL_ERROR,
        causes=(StatusCause(message=message),),
        code=500,
    )


def parse_exit_code(payload: bytes) -> int | None:
    """The exit code a v4 error-stream payload reports; None when it reports another failure.

    An empty payload (the stream closed without a status) counts as success, as in client-go.
    """
    if not payload.strip():
        return 0
    doc = json.loads(payload)
    if doc.get("status") == SUCCESS:
        return 0
    if doc.get("reason") == REASON_NON_ZERO_EXIT:
        for cause in (doc.get("details") or {}).get("causes") or []:
            if cause.get("reason") == CAUSE_EXIT_CODE:
                return int(cause.get("message", ""))
    return None


def port_forward_error(message: str, *, close_connection: bool) -> bytes:
    """kubelet's ``portForwardErrResponse`` as written by ``json.Encoder`` (with its newline)."""
    doc: dict[str, Any] = {}
    if close_connection:
        doc["closeConnection"] = True
    if message:
        doc["message"] = message
    return go_json(doc) + b"\n"


def go_list(values: list[str]) -> str:
    """Format a string slice as Go's ``%v`` does: ``[a b c]``."""
    return "[" + " ".join(values) + "]"


def go_json(doc: Any) -> bytes:
    """Compact JSON with Go's escaping of ``<``, ``>``, ``&``, U+2028 and U+2029."""
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text.encode()
