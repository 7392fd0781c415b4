"""The CRI log format: records, partial lines, the maximum line size."""

from __future__ import annotations

import re
from pathlib import Path

from pycontainerd.cri.logs import LineSplitter, LogFile, record, timestamp

RECORD = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (stdout|stderr) ([FP]) (.*)$")


def _parse(records: list[bytes]) -> list[tuple[bytes, bytes, bytes]]:
    out = []
    for rec in records:
        assert rec.endswith(b"\n")
        m = RECORD.match(rec[:-1])
        assert m is not None, rec
        out.append((m.group(2), m.group(3), m.group(4)))
    return out


def test_timestamp_is_rfc3339_nano_utc() -> None:
    assert timestamp(1_475_712_829_669_794_202) == b"2016-10-06T00:13:49.669794202Z"
    assert timestamp(0) == b"1970-01-01T00:00:00.000000000Z"


def test_record_layout() -> None:
    assert record(b"stdout", b"F", b"hello", 0) == b"1970-01-01T00:00:00.000000000Z stdout F hello\n"


def test_lines_split_across_chunks() -> None:
    splitter = LineSplitter("stdout", 0)
    assert splitter.feed(b"hel") == []
    assert _parse(splitter.feed(b"lo\nwor")) == [(b"stdout", b"F", b"hello")]
    assert _parse(splitter.feed(b"ld\n\n")) == [(b"stdout", b"F", b"world"), (b"stdout", b"F", b"")]


def test_crlf_is_one_line() -> None:
    assert _parse(LineSplitter("stderr", 0).feed(b"a\r\n")) == [(b"stderr", b"F", b"a")]


def test_long_lines_are_cut_into_partials() -> None:
    splitter = LineSplitter("stdout", 4)
    got = _parse(splitter.feed(b"abcdefghij\n"))
    assert got == [(b"stdout", b"P", b"abcd"), (b"stdout", b"P", b"efgh"), (b"stdout", b"F", b"ij")]
    # An unterminated long run is flushed as partials as soon as it exceeds the limit.
    assert _parse(splitter.feed(b"0123456")) == [(b"stdout", b"P", b"0123")]
    assert _parse(splitter.close()) == [(b"stdout", b"F", b"456")]
    assert splitter.close() == []


def test_eof_without_newline_is_a_full_record() -> None:
    splitter = LineSplitter("stdout", 0)
    assert splitter.feed(b"tail") == []
    assert _parse(splitter.close()) == [(b"stdout", b"F", b"tail")]


def test_log_file_appends_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "pod" / "c.log"
    log = LogFile(str(path))
    log.write([record(b"stdout", b"F", b"one", 0)])
    path.rename(tmp_path / "pod" / "c.log.1")
    log.write([record(b"stdout", b"F", b"two", 0)])  # still the renamed file
    log.reopen()
    log.write([record(b"stdout", b"F", b"three", 0)])
    log.close()
    assert (tmp_path / "pod" / "c.log.1").read_bytes().count(b"\n") == 2
    assert path.read_bytes().endswith(b"stdout F three\n")


def test_no_path_writes_nothing() -> None:
    log = LogFile("")
    log.write([b"x\n"])
    log.close()
