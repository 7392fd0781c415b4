"""Small pure pieces: retry delays, status -> error kinds, URLs, mount candidates, limits."""

from __future__ import annotations

import asyncio

import pytest

from pycontainerd import errdefs
from pycontainerd.remotes.hosts import RegistryHost
from pycontainerd.remotes.limits import Limits, unlimited
from pycontainerd.remotes.pusher import distribution_source_key, mount_candidates
from pycontainerd.remotes.reference import parse_reference
from pycontainerd.remotes.transport import RetryPolicy, Transport, parse_error_body, status_error


def test_retry_delays_grow_and_cap() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0, jitter=0.0)
    assert [policy.delay(i) for i in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(0, retry_after=2.0) == 2.0
    assert policy.delay(0, retry_after=100.0) == 3.0
    jittery = RetryPolicy(base_delay=1.0, jitter=0.5)
    assert all(0.5 <= jittery.delay(0) <= 1.0 for _ in range(50))


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, errdefs.InvalidArgument),
        (401, errdefs.PermissionDenied),
        (403, errdefs.PermissionDenied),
        (404, errdefs.NotFound),
        (405, errdefs.Unimplemented),
        (409, errdefs.Conflict),
        (416, errdefs.OutOfRange),
        (429, errdefs.ResourceExhausted),
        (500, errdefs.Unavailable),
        (503, errdefs.Unavailable),
        (302, errdefs.Unknown),
    ],
)
def test_status_error_kinds(status: int, kind: type[errdefs.ContainerdError]) -> None:
    err = status_error("push", parse_error_body(status, "Reason", b""))
    assert type(err) is kind
    assert err.message.startswith(f"push: {status} Reason")


def test_error_body() -> None:
    body = b'{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:x"}]}'
    err = parse_error_body(400, "Bad Request", body)
    assert err.describe() == "400 Bad Request: MANIFEST_BLOB_UNKNOWN: blob unknown to registry"
    assert (
        parse_error_body(502, "Bad Gateway", b"<html>proxy</html>").describe() == "502 Bad Gateway: <html>proxy</html>"
    )


def test_urls_carry_ns_for_mirrors_only() -> None:
    transport = Transport()
    upstream = RegistryHost("https", "registry-1.docker.io")
    mirror = RegistryHost("http", "mirror.local:5000", path="/prefix/v2")
    assert transport.url(upstream, "library/a/manifests/v1", registry="docker.io") == (
        "https://registry-1.docker.io/v2/library/a/manifests/v1"
    )
    assert transport.url(mirror, "library/a/blobs/sha256:1", registry="docker.io") == (
        "http://mirror.local:5000/prefix/v2/library/a/blobs/sha256:1?ns=docker.io"
    )
    assert transport.url(upstream, "a/blobs/uploads/", query=[("mount", "sha256:1"), ("from", "b/c")]) == (
        "https://registry-1.docker.io/v2/a/blobs/uploads/?mount=sha256%3A1&from=b%2Fc"
    )
    # Absolute URLs (upload locations) keep their own query and get ours appended.
    assert transport.url(upstream, "https://up.example/x?_state=abc", query=[("digest", "sha256:1")]) == (
        "https://up.example/x?_state=abc&digest=sha256%3A1"
    )


def test_mount_candidates() -> None:
    ref = parse_reference("127.0.0.1:5000/team/app/web:v1")
    key = distribution_source_key(ref.domain)
    assert key == "containerd.io/distribution.source.127.0.0.1"
    annotations = {key: "other/x,team/app/web,team/lib,team/app/api,team/lib", "unrelated": "a"}
    assert mount_candidates(ref, annotations) == ["team/app/api", "team/lib", "other/x"]
    assert mount_candidates(ref, {}) == []


def test_limits_bound_concurrency() -> None:
    async def run(limits: Limits, kind: str) -> int:
        active = peak = 0

        async def job() -> None:
            nonlocal active, peak
            async with limits.download() if kind == "down" else limits.upload():
                active += 1
                peak = max(peak, active)
                await asyncio.sleep(0.001)
                active -= 1

        await asyncio.gather(*(job() for _ in range(8)))
        return peak

    assert asyncio.run(run(Limits(2, 1), "down")) == 2
    assert asyncio.run(run(Limits(2, 1), "up")) == 1
    assert asyncio.run(run(unlimited(), "down")) == 8
