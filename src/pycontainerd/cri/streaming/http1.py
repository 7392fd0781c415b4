"""Just enough HTTP/1.1 for an upgrade, without I/O.

The streaming server answers exactly one request per connection: either an error (then it
closes) or ``101 Switching Protocols`` (then the socket belongs to SPDY or websocket). So there is
no keep-alive, no request body and no chunked encoding here: parse one request head, build one
response head. The test client uses the response-side parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

MAX_HEAD = 64 * 1024
"""Largest request or response head accepted, in bytes."""

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class HttpError(Exception):
    """A request the server answers with an error status, then closes.

    Args:
        status: The HTTP status code.
        message: The plain-text body (a newline is appended, as Go's ``http.Error`` does).
        headers: Extra response headers.
    """

    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers

    def response(self) -> bytes:
        """The complete response."""
        return error_response(self.status, self.message, self.headers)


@dataclass(frozen=True, slots=True)
class Head:
    """A parsed request or response head.

    Attributes:
        start: The start line's three parts: method, target, version (request) or version,
            status, reason (response).
        headers: Header fields in arrival order, names as sent.
    """

    start: tuple[str, str, str]
    headers: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name``, in order."""
        lowered = name.lower()
        return [value for key, value in self.headers if key.lower() == lowered]

    def tokens(self, name: str) -> list[str]:
        """The comma-separated items of every ``name`` header, trimmed, empty ones dropped."""
        return [item.strip() for value in self.get_all(name) for item in value.split(",") if item.strip()]

    @property
    def method(self) -> str:
        """The request method."""
        return self.start[0]

    @property
    def path(self) -> str:
        """The request target's path."""
        return urlsplit(self.start[1]).path

    @property
    def query(self) -> dict[str, list[str]]:
        """The request target's query parameters."""
        return parse_qs(urlsplit(self.start[1]).query)

    @property
    def status(self) -> int:
        """The response status code."""
        return int(self.start[1])


def parse_head(data: bytes, *, response: bool = False) -> Head:
    """Parse a head ending in an empty line (the terminator may be included or not).

    Raises:
        HttpError: 400 for anything malformed (also raised for responses, by the client).
    """
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise HttpError(400, "malformed request") from exc
    lines = text.split("\r\n")
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise HttpError(400, "empty request")
    parts = lines[0].split(" ", 2)
    if len(parts) != 3:
        raise HttpError(400, "malformed start line")
    if response:
        if not parts[0].startswith("HTTP/1.") or not (parts[1].isdigit() and len(parts[1]) == 3):
            raise HttpError(400, "malformed status line")
    elif not parts[0] or set(parts[0]) - _TOKEN_CHARS or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "malformed request line")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or set(name) - _TOKEN_CHARS:
            raise HttpError(400, "malformed header line")
        headers.append((name, value.strip(" \t")))
    start = (parts[0], parts[1], parts[2])
    return Head(start, tuple(headers))


def format_head(start_line: str, headers: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> bytes:
    """A head: the start line, the header lines, and the empty line."""
    lines = [start_line, *(f"{name}: {value}" for name, value in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1")


def error_response(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A plain-text error response that closes the connection (Go's ``http.Error`` body)."""
    body = (message + "\n").encode()
    head = format_head(
        f"HTTP/1.1 {status} {_reason(status)}",
        [
            *headers,
            ("Content-Type", "text/plain; charset=utf-8"),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ],
    )
    return head + body


def switching_protocols(headers: list[tuple[str, str]]) -> bytes:
    """A ``101 Switching Protocols`` head with ``headers``."""
    return format_head("HTTP/1.1 101 Switching Protocols", headers)


def negotiate(client: list[str], server: list[str]) -> str | None:
    """The first of the client's protocols the server supports (the client orders by preference)."""
    for protocol in client:
        if protocol in server:
            return protocol
    return None


def wants_upgrade(head: Head) -> bool:
    """Whether ``Connection`` lists ``upgrade``."""
    return any(token.lower() == "upgrade" for token in head.tokens("Connection"))


def is_websocket(head: Head) -> bool:
    """kubelet's ``wsstream.IsWebSocketRequest``: ``Upgrade: websocket`` and ``Connection: upgrade``."""
    return (head.get("Upgrade") or "").strip().lower() == "websocket" and wants_upgrade(head)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
