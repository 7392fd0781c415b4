"""Fuzzing the layer applier: random member sequences (escapes through ``..``, symlinks, hard
links, whiteouts, devices, odd modes and owners), byte-level corruption of valid archives, and
corrupt compressed streams. Every apply either succeeds or fails with InvalidArgument, and
nothing outside the root (a victim tree beside it, with its own modes, owners, times, xattrs and
inodes) changes."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from pycontainerd.archive.tar import ApplyOptions, apply_tar
from pycontainerd.core.snapshots import Mount
from pycontainerd.diff.apply import apply_stream
from pycontainerd.errdefs import InvalidArgument
from tests.fuzz.budget import count, fuzz_settings
from tests.fuzz.tarbuild import OUT, Member, inodes, make_outside, tar_bytes, tree_state

pytestmark = pytest.mark.root  # owners, devices, overlay whiteouts and trusted.* xattrs need root

COMPONENTS = st.sampled_from(
    ["a", "b", "c", "etc", "..", ".", "", ".wh.a", ".wh.b", ".wh..wh..opq", ".wh..", ".wh.", ".wh.etc", "x" * 255]
)
NAMES = st.one_of(
    st.lists(COMPONENTS, min_size=1, max_size=5).map("/".join),
    st.lists(COMPONENTS, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts)),
    st.sampled_from([f"{OUT}/victim", f"../{OUT}", "../outside/victim", "a/../../b", "x" * 300, "a/" * 60]),
    st.text(min_size=1, max_size=40),
)
TARGETS = st.one_of(
    NAMES,
    st.sampled_from(
        [OUT, f"{OUT}/victim", f"{OUT}/dir", f"{OUT}/dir/secret", "../outside", "../../outside/victim", "/", ".."]
    ),
)
KINDS = st.sampled_from(
    [
        tarfile.REGTYPE,
        tarfile.REGTYPE,
        tarfile.DIRTYPE,
        tarfile.DIRTYPE,
        tarfile.SYMTYPE,
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.FIFOTYPE,
        tarfile.CHRTYPE,
        tarfile.BLKTYPE,
        tarfile.CONTTYPE,
        b"Z",  # a type no tar writer defines
    ]
)
PAX = st.dictionaries(
    st.sampled_from(
        [
            "SCHILY.xattr.user.fuzz",
            "SCHILY.xattr.trusted.overlay.opaque",
            "SCHILY.xattr.trusted.overlay.redirect",
            "SCHILY.xattr.security.fuzz",
            "comment",
        ]
    ),
    st.text(max_size=20),
    max_size=2,
)


@st.composite
def members(draw: st.DrawFn) -> Member:
    kind = draw(KINDS)
    return Member(
        name=draw(NAMES),
        kind=kind,
        data=draw(st.binary(max_size=64)) if kind in (tarfile.REGTYPE, tarfile.CONTTYPE) else b"",
        link=draw(TARGETS) if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else "",
        mode=draw(st.integers(0, 0o7777)),
        uid=draw(st.integers(0, 70_000)),
        gid=draw(st.integers(0, 70_000)),
        mtime=draw(st.integers(-(2**31), 2**33)),
        pax=draw(PAX),
        major=draw(st.integers(0, 255)),
        minor=draw(st.integers(0, 255)),
    )


LAYERS = st.lists(st.lists(members(), min_size=1, max_size=12), min_size=1, max_size=2)
OPTIONS = st.builds(
    ApplyOptions,
    whiteouts=st.sampled_from(["overlay", "remove"]),
    allow_devices=st.booleans(),
)


@dataclass(frozen=True)
class Arena:
    """A root to apply into, a victim tree beside it, and their parent."""

    top: str
    root: str
    outside: str


@contextmanager
def arena() -> Iterator[Arena]:
    top = tempfile.mkdtemp(prefix="pcd-fuzz-tar-")
    try:
        root, outside = os.path.join(top, "root"), os.path.join(top, "outside")
        os.mkdir(root, 0o755)
        make_outside(outside)
        yield Arena(top, root, outside)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def check_applies_safely(a: Arena, apply: Callable[[], object]) -> None:
    """Run ``apply``: only InvalidArgument may escape, and nothing outside the root may change."""
    before = tree_state(a.outside)
    outside_inodes = inodes(a.outside)
    listing = sorted(os.listdir(a.top))
    try:
        apply()
    except InvalidArgument:
        pass
    assert tree_state(a.outside) == before, "applying the layer changed files outside the root"
    assert sorted(os.listdir(a.top)) == listing, "applying the layer created files beside the root"
    shared = inodes(a.root) & outside_inodes
    assert not shared, "a file in the root is a hard link to a file outside it"


@fuzz_settings(300)
@given(layers=LAYERS, options=OPTIONS)
def test_random_members_stay_inside_the_root(layers: list[list[Member]], options: ApplyOptions) -> None:
    with arena() as a:
        for layer in layers:
            data = tar_bytes(layer, a.outside)
            count("archive: member sequences")
            check_applies_safely(a, lambda data=data: apply_tar(io.BytesIO(data), a.root, options))  # type: ignore[misc]


SEED_LAYER = [
    Member("etc", tarfile.DIRTYPE, mode=0o755),
    Member("etc/passwd", tarfile.REGTYPE, data=b"root:x:0:0::/:/bin/sh\n"),
    Member("link", tarfile.SYMTYPE, link=f"{OUT}/victim"),
    Member("hard", tarfile.LNKTYPE, link="etc/passwd"),
    Member("etc/.wh.passwd", tarfile.REGTYPE),
    Member("long/" + "n" * 120, tarfile.REGTYPE, data=b"x" * 700, pax={"SCHILY.xattr.user.a": "b"}),
]


@fuzz_settings(300)
@given(
    fmt=st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT]),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["flip", "insert", "delete", "truncate"]),
            st.integers(0, 1 << 16),
            st.binary(min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_corrupted_archives_fail_cleanly(fmt: int, edits: list[tuple[str, int, bytes]]) -> None:
    with arena() as a:
        try:
            data = bytearray(tar_bytes(SEED_LAYER, a.outside, fmt))
        except ValueError:
            return  # the format cannot hold a member (ustar and a long name): nothing to corrupt
        for op, pos, chunk in edits:
            pos %= max(len(data), 1)
            if op == "flip":
                data[pos : pos + len(chunk)] = bytes(
                    x ^ y for x, y in zip(data[pos : pos + len(chunk)], chunk, strict=False)
                )
            elif op == "insert":
                data[pos:pos] = chunk
            elif op == "delete":
                del data[pos : pos + len(chunk)]
            else:
                del data[pos:]
        count("archive: corrupted tars")
        blob = bytes(data)
        check_applies_safely(a, lambda: apply_tar(io.BytesIO(blob), a.root, ApplyOptions(whiteouts="overlay")))


GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
PLAIN = "application/vnd.oci.image.layer.v1.tar"


@fuzz_settings(200)
@given(
    media_type=st.sampled_from([GZIP, ZSTD, PLAIN, "application/octet-stream"]),
    compress=st.sampled_from(["gzip", "zstd", "none", "garbage"]),
    cut=st.integers(0, 4096),
    noise=st.binary(max_size=64),
)
def test_corrupt_compressed_layers_fail_cleanly(media_type: str, compress: str, cut: int, noise: bytes) -> None:
    with arena() as a:
        plain = tar_bytes(SEED_LAYER, a.outside)
        if compress == "gzip":
            blob = gzip.compress(plain)
        elif compress == "zstd":
            blob = zstandard.ZstdCompressor().compress(plain)
        elif compress == "none":
            blob = plain
        else:
            blob = b"\x1f\x8b" + noise
        # Cut it short and append noise: a stream that ends early or goes on with rubbish.
        blob = blob[: max(len(blob) - cut, 0)] + noise
        mounts = [Mount(type="bind", source=a.root, options=("rbind", "rw"))]
        count("archive: compressed layer streams")
        check_applies_safely(a, lambda: apply_stream(io.BufferedReader(io.BytesIO(blob)), media_type, mounts))  # type: ignore[arg-type]
