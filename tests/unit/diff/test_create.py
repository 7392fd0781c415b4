from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from pycontainerd.archive.tar import apply_tar
from pycontainerd.diff.create import write_diff


def names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return tf.getnames()


def test_diff_round_trips_through_apply(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for root in (lower, upper):
        (root / "etc").mkdir(parents=True)
        (root / "etc/keep").write_text("same")
        os.utime(root / "etc/keep", ns=(1, 1))
    (lower / "etc/gone").write_text("x")
    (lower / "olddir/sub").mkdir(parents=True)
    (lower / "olddir/sub/f").write_text("x")
    (upper / "etc/new").write_text("new")
    (upper / "etc/keep2").write_text("y")
    os.symlink("new", upper / "etc/link")
    buf = io.BytesIO()
    write_diff(buf, str(lower), str(upper))
    got = names(buf.getvalue())
    assert "etc/.wh.gone" in got
    assert ".wh.olddir" in got and not any(n.startswith("olddir/") for n in got), "only the topmost removal"
    assert "etc/new" in got and "etc/link" in got
    assert "etc/keep" not in got
    # Applying the diff on a copy of lower gives upper.
    target = tmp_path / "target"
    (target / "etc").mkdir(parents=True)
    (target / "etc/keep").write_text("same")
    (target / "etc/gone").write_text("x")
    (target / "olddir").mkdir()
    buf.seek(0)
    apply_tar(buf, target)
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == sorted(
        p.relative_to(upper).as_posix() for p in upper.rglob("*")
    )
    assert os.readlink(target / "etc/link") == "new"
