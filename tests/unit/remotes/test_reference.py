"""Image reference parsing and normalization, as docker and containerd do it."""

from __future__ import annotations

import pytest

from pycontainerd.errdefs import InvalidArgument
from pycontainerd.remotes.reference import Reference, familiar_name, parse_reference

D64 = "sha256:" + "a" * 64
D512 = "sha512:" + "b" * 128


@pytest.mark.parametrize(
    ("given", "domain", "path", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", ""),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", ""),
        ("library/busybox", "docker.io", "library/busybox", "latest", ""),
        ("user/app", "docker.io", "user/app", "latest", ""),
        ("docker.io/busybox", "docker.io", "library/busybox", "latest", ""),
        ("index.docker.io/user/app:v1", "docker.io", "user/app", "v1", ""),
        ("docker.io/a/b/c", "docker.io", "a/b/c", "latest", ""),
        ("localhost/app", "localhost", "app", "latest", ""),
        ("localhost:5000/a/b:tag", "localhost:5000", "a/b", "tag", ""),
        ("127.0.0.1:5000/repo:tag", "127.0.0.1:5000", "repo", "tag", ""),
        ("[::1]:5000/repo", "[::1]:5000", "repo", "latest", ""),
        ("example.com/a__b/c-d.e:t_1", "example.com", "a__b/c-d.e", "t_1", ""),
        ("a.b/c---d", "a.b", "c---d", "latest", ""),
        ("Registry/app", "Registry", "app", "latest", ""),  # upper case: a domain, not a namespace
        ("ghcr.io/org/app@" + D64, "ghcr.io", "org/app", "", D64),
        ("repo:tag@" + D64, "docker.io", "library/repo", "tag", D64),
        ("host:5000/repo:tag@" + D512, "host:5000", "repo", "tag", D512),
        ("foo:5000", "docker.io", "library/foo", "5000", ""),  # a bare name with a tag, not a host
    ],
)
def test_parse(given: str, domain: str, path: str, tag: str, digest: str) -> None:
    assert parse_reference(given) == Reference(domain, path, tag, digest)


@pytest.mark.parametrize(
    "given",
    [
        "",
        "Busybox",
        "docker.io/Library/busybox",
        "localhost:5000/UPPER",
        "busybox:",
        "busybox@sha256:abc",
        "busybox@sha256:" + "g" * 64,
        "busybox@md5:" + "0" * 32,
        "busybox@sha256:" + "a" * 63,
        "a" * 64,
        "a/b:",
        "http://host/repo",
        "repo:tag:tag",
        ":tag",
        "-repo",
        "repo/",
        "repo//x",
        "busybox:" + "t" * 129,
        "example.com/" + "a" * 256,
        "host:port/repo",
    ],
)
def test_invalid(given: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_reference(given)


def test_string_forms() -> None:
    ref = parse_reference("repo:tag@" + D64)
    assert str(ref) == f"docker.io/library/repo:tag@{D64}"
    assert ref.name == "docker.io/library/repo"
    assert ref.object == f"tag@{D64}"
    assert ref.manifest_key == D64  # the digest wins over the tag
    assert parse_reference("busybox").manifest_key == "latest"
    assert parse_reference("ghcr.io/a/b@" + D64).object == "@" + D64


def test_default_tag_can_be_left_out() -> None:
    assert parse_reference("busybox", default_tag="").tag == ""
    assert str(parse_reference("busybox", default_tag="")) == "docker.io/library/busybox"


def test_with_tag_and_digest() -> None:
    ref = parse_reference("ghcr.io/a/b:v1")
    assert str(ref.with_tag("v2")) == "ghcr.io/a/b:v2"
    assert str(ref.with_digest(D64)) == f"ghcr.io/a/b:v1@{D64}"
    with pytest.raises(InvalidArgument):
        ref.with_tag("bad tag")
    with pytest.raises(InvalidArgument):
        ref.with_digest("sha256:short")


@pytest.mark.parametrize(
    ("given", "familiar"),
    [
        ("busybox", "busybox:latest"),
        ("user/app:v1", "user/app:v1"),
        ("docker.io/library/a/b", "library/a/b:latest"),
        ("ghcr.io/org/app:v1", "ghcr.io/org/app:v1"),
    ],
)
def test_familiar_name(given: str, familiar: str) -> None:
    assert familiar_name(parse_reference(given)) == familiar
