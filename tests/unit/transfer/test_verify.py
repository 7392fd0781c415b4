"""Image verifiers: executables that accept or refuse an image before it is pulled."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from pycontainerd.core.images import Descriptor
from pycontainerd.errdefs import Unknown
from pycontainerd.transfer.verify import BinDirVerifier, VerifierConfig

DESC = Descriptor("application/vnd.oci.image.index.v1+json", "sha256:" + "ab" * 32, 1234)


def script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def verify(directory: Path, **config: object) -> object:
    verifier = BinDirVerifier(VerifierConfig(bin_dir=str(directory), **config))  # type: ignore[arg-type]
    return asyncio.run(verifier.verify("example.com/app:1", DESC))


def test_missing_or_empty_directory_accepts(tmp_path: Path) -> None:
    judgement = verify(tmp_path / "absent")
    assert judgement.ok and "does not exist" in judgement.reason  # type: ignore[attr-defined]
    judgement = verify(tmp_path)
    assert judgement.ok and "no image verifier binaries" in judgement.reason  # type: ignore[attr-defined]


def test_arguments_and_stdin_reach_the_verifier(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    script(tmp_path, "a-record", f'echo "$@" > {seen}.args; cat > {seen}.stdin; echo fine by me\n')
    judgement = verify(tmp_path)
    assert judgement.ok and judgement.reason == "a-record => fine by me"  # type: ignore[attr-defined]
    args = (tmp_path / "seen.args").read_text().split()
    assert args == [
        "-name",
        "example.com/app:1",
        "-digest",
        DESC.digest,
        "-stdin-media-type",
        "application/vnd.oci.descriptor.v1+json",
    ]
    assert json.loads((tmp_path / "seen.stdin").read_text()) == {
        "mediaType": DESC.media_type,
        "digest": DESC.digest,
        "size": 1234,
    }


def test_a_refusal_stops_with_the_reason(tmp_path: Path) -> None:
    script(tmp_path, "1-ok", "echo ok\n")
    script(tmp_path, "2-no", "echo unsigned image; echo debug noise >&2; exit 3\n")
    script(tmp_path, "3-never", "touch ran; exit 0\n")
    judgement = verify(tmp_path)
    assert not judgement.ok  # type: ignore[attr-defined]
    assert judgement.reason == "verifier 2-no rejected image (exit code 3): unsigned image"  # type: ignore[attr-defined]
    assert not (tmp_path / "ran").exists(), "verifiers after a refusal do not run"


def test_max_verifiers_and_timeout(tmp_path: Path) -> None:
    script(tmp_path, "1", "echo one\n")
    script(tmp_path, "2", "echo two\n")
    judgement = verify(tmp_path, max_verifiers=1)
    assert judgement.reason == "1 => one"  # type: ignore[attr-defined]
    slow = tmp_path / "slow"
    slow.mkdir()
    script(slow, "sleepy", "sleep 30\n")
    with pytest.raises(Unknown, match="timed out"):
        verify(slow, per_verifier_timeout="200ms")
