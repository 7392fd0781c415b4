"""Content: blobs addressed by digest, and ingests (in-progress writes) addressed by ref."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pycontainerd.errdefs import InvalidArgument

SHA256 = "sha256"
_DIGEST = re.compile(r"(?P<alg>[a-z0-9]+(?:[.+_-][a-z0-9]+)*):(?P<hex>[a-zA-Z0-9=_-]+)")
_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}


def parse_digest(value: str) -> str:
    """Validate an OCI digest string (``sha256:<64 hex>``); InvalidArgument otherwise."""
    m = _DIGEST.fullmatch(value or "")
    if not m:
        raise InvalidArgument(f"invalid digest {value!r}: invalid checksum digest format")
    alg, hexpart = m.group("alg"), m.group("hex")
    if alg not in _HEX_LEN:
        raise InvalidArgument(f"invalid digest {value!r}: unsupported digest algorithm")
    if len(hexpart) != _HEX_LEN[alg] or not re.fullmatch(r"[a-f0-9]+", hexpart):
        raise InvalidArgument(f"invalid digest {value!r}: invalid checksum digest length")
    return value


@dataclass(frozen=True, slots=True)
class Info:
    """A committed blob.

    Attributes:
        digest: ``sha256:<hex>``.
        size: bytes.
        created_at: nanoseconds since the epoch.
        updated_at: nanoseconds since the epoch.
        labels: user labels (the GC reads ``containerd.io/gc.*`` ones).
    """

    digest: str
    size: int
    created_at: int = 0
    updated_at: int = 0
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Status:
    """An ingest in progress.

    Attributes:
        ref: the client's name for the write.
        offset: bytes written so far.
        total: expected size, 0 when unknown.
        expected: expected digest, "" when unknown.
        started_at: nanoseconds since the epoch.
        updated_at: nanoseconds since the epoch.
    """

    ref: str
    offset: int
    total: int = 0
    expected: str = ""
    started_at: int = 0
    updated_at: int = 0
