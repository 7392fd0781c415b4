"""The local content store: committed blobs and resumable ingests in one directory tree.

Layout under the store's root::

    blobs/<algorithm>/<hex>     committed blobs, read-only (mode & 0444), named by digest
    ingest/<sha256 of ref>/     one directory per ingest, see ``writer.py``
    ingest/.tmp-*               an ingest being created or removed; never valid on its own

Every change that must look atomic is a rename: an ingest directory is built under a
``.tmp-`` name and renamed into place, an aborted one is renamed away before it is deleted,
and a blob appears by renaming a fully written, fsynced data file into ``blobs/``. So a crash
at any point leaves complete blobs, resumable ingests, and ``.tmp`` debris that the next
:class:`LocalStore` removes when it opens.

The store knows nothing of namespaces, labels or leases; ``metadata/content.py`` adds them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import stat
import threading
import time
from typing import TYPE_CHECKING

from pycontainerd.content.local.locks import RefLocks
from pycontainerd.content.local.writer import (
    ALGORITHMS,
    DATA,
    EXPECTED,
    REF,
    STARTED_AT,
    TMP_SUFFIX,
    TOTAL,
    UPDATED_AT,
    Writer,
    hash_file,
    new_hasher,
    read_status,
    write_text,
)
from pycontainerd.core.content import SHA256, Info, Status, parse_digest
from pycontainerd.errdefs import AlreadyExists, InvalidArgument, NotFound

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

log = logging.getLogger(__name__)

_TMP_PREFIX = ".tmp-"
_BLOB_NAME = {alg: re.compile(f"[0-9a-f]{{{hashlib.new(alg).digest_size * 2}}}") for alg in ALGORITHMS}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    """Blobs and ingests under ``root``; one instance (one process) per root.

    All methods are synchronous and thread-safe. They do short, bounded work except
    :meth:`writer` when it resumes a large ingest (it re-reads the data to rebuild the hash)
    and :meth:`Writer.commit` (one fsync of the data).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "blobs"
        self._ingests = root / "ingest"
        self._locks = RefLocks()
        # Serialises "is the blob there? then rename onto it" between committers.
        self._publish_mu = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        self._blobs.mkdir(mode=0o755, exist_ok=True)
        (self._blobs / SHA256).mkdir(mode=0o755, exist_ok=True)
        self._ingests.mkdir(mode=0o755, exist_ok=True)
        self._clean_debris()

    # -- blobs -----------------------------------------------------------------------------

    def _blob_path(self, digest: str) -> Path:
        parse_digest(digest)
        algorithm, _, hexpart = digest.partition(":")
        return self._blobs / algorithm / hexpart

    def info(self, digest: str) -> Info:
        """Size and times of a blob (both times are the commit time, from the file's mtime).

        Raises:
            InvalidArgument: ``digest`` is malformed.
            NotFound: no such blob.
        """
        try:
            st = os.stat(self._blob_path(digest))
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"content {digest}") from None
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(f"content {digest}")
        return Info(digest, st.st_size, st.st_mtime_ns, st.st_mtime_ns)

    def path(self, digest: str) -> Path:
        """Where the blob's file is, for callers that stream or map it themselves.

        Raises:
            InvalidArgument: ``digest`` is malformed.
            NotFound: no such blob.
        """
        p = self._blob_path(digest)
        if not p.is_file():
            raise NotFound(f"content {digest}")
        return p

    def read_at(self, digest: str, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of a blob from ``offset`` (``size <= 0``: to the end).

        Like an ``io.ReaderAt``, reading past the end returns fewer bytes (none at all from an
        offset at or beyond the size) rather than failing; range checks belong to the caller.

        Raises:
            InvalidArgument: malformed digest or negative offset.
            NotFound: no such blob.
        """
        if offset < 0:
            raise InvalidArgument(f"negative read offset {offset}")
        try:
            fd = os.open(self._blob_path(digest), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"content {digest}") from None
        try:
            if size <= 0:
                size = max(0, os.fstat(fd).st_size - offset)
            parts: list[bytes] = []
            while size > 0:
                # pread may return less than asked for (huge reads, signals): loop until EOF.
                part = os.pread(fd, size, offset)
                if not part:
                    break
                parts.append(part)
                offset += len(part)
                size -= len(part)
        finally:
            os.close(fd)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def delete(self, digest: str) -> None:
        """Remove a blob.

        Raises:
            InvalidArgument: ``digest`` is malformed.
            NotFound: no such blob.
        """
        try:
            os.unlink(self._blob_path(digest))
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"content {digest}") from None

    def walk(self) -> Iterator[Info]:
        """Every committed blob, by algorithm then digest.

        Only regular files named exactly like a digest of a known algorithm count: temporary
        or foreign files under ``blobs/`` are never reported as content.
        """
        for algorithm in ALGORITHMS:
            try:
                entries = sorted(os.scandir(self._blobs / algorithm), key=lambda e: e.name)
            except FileNotFoundError:
                continue
            for entry in entries:
                if not _BLOB_NAME[algorithm].fullmatch(entry.name):
                    continue
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # deleted while we walked
                    continue
                yield Info(f"{algorithm}:{entry.name}", st.st_size, st.st_mtime_ns, st.st_mtime_ns)

    def _publish(self, data: Path, digest: str) -> None:
        """Rename a verified, fsynced ingest data file into ``blobs/``; AlreadyExists if there."""
        target = self._blob_path(digest)
        with self._publish_mu:
            if not target.parent.is_dir():
                target.parent.mkdir(mode=0o755, exist_ok=True)
                _fsync_dir(self._blobs)
            if target.exists():
                raise AlreadyExists(f"content {digest}")
            # Mode and times are set before the rename so the blob never shows up writable or
            # with the ingest's last-write time; the commit time is its created_at.
            mode = os.stat(data).st_mode & 0o777
            os.chmod(data, mode & 0o444)
            now = time.time_ns()
            os.utime(data, ns=(now, now))
            try:
                os.rename(data, target)
            except BaseException:
                os.chmod(data, mode)
                raise
        # Make the new directory entry durable before the caller deletes the ingest.
        _fsync_dir(target.parent)

    # -- ingests ---------------------------------------------------------------------------

    def _ingest_dir(self, ref: str) -> Path:
        # Hashing keeps the path short and safe whatever characters the ref holds.
        return self._ingests / hashlib.sha256(ref.encode()).hexdigest()

    def status(self, ref: str) -> Status:
        """Progress of the ingest ``ref``, open or not.

        Raises:
            NotFound: no such ingest.
        """
        try:
            st = read_status(self._ingest_dir(ref))
        except NotFound:
            raise NotFound(f'ingest ref "{ref}"') from None
        if st.ref != ref:
            raise NotFound(f'ingest ref "{ref}"')
        return st

    def list_statuses(self) -> list[Status]:
        """Every ingest on disk, by ref; ones being committed or removed meanwhile are skipped."""
        out = []
        for entry in os.scandir(self._ingests):
            if entry.name.startswith("."):
                continue
            try:
                out.append(read_status(self._ingests / entry.name))
            except NotFound:
                continue
        return sorted(out, key=lambda s: s.ref)

    def abort(self, ref: str) -> None:
        """Remove the ingest ``ref`` and its data.

        Raises:
            Unavailable: a writer holds ``ref`` (close it first).
            NotFound: no such ingest.
        """
        self._locks.acquire(ref)
        try:
            d = self._ingest_dir(ref)
            if not d.is_dir():
                raise NotFound(f'ingest ref "{ref}"')
            self._discard(d)
        finally:
            self._locks.release(ref)

    def _discard(self, ingest_dir: Path) -> None:
        # Renamed away first, so a crash halfway through the delete cannot leave a
        # directory that looks like a (shorter) resumable ingest.
        doomed = self._ingests / f"{_TMP_PREFIX}{ingest_dir.name}-{secrets.token_hex(4)}"
        os.rename(ingest_dir, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def writer(self, ref: str, *, total: int = 0, expected: str = "") -> Writer:
        """Start the ingest ``ref``, or resume it where the data on disk ends.

        Resuming re-reads the data already written to rebuild the running digest. A ``total``
        different from the recorded one (both non-zero) discards the old ingest and starts
        afresh; a total where none was recorded, or a new ``expected``, is recorded.

        Args:
            ref: the client's name for the ingest; any non-empty text.
            total: expected size, 0 when unknown.
            expected: expected digest, "" when unknown; also picks the hash algorithm.

        Raises:
            InvalidArgument: empty ref, negative total or malformed ``expected``.
            Unavailable: another writer holds ``ref``.
            AlreadyExists: a blob ``expected`` is already committed.
        """
        if not ref:
            raise InvalidArgument("ref must not be empty")
        if total < 0:
            raise InvalidArgument(f"negative total {total}")
        if expected:
            parse_digest(expected)
        self._locks.acquire(ref)
        try:
            if expected and self._blob_path(expected).is_file():
                raise AlreadyExists(f"content {expected}")
            return self._open(ref, total, expected)
        except BaseException:
            self._locks.release(ref)
            raise

    def _open(self, ref: str, total: int, expected: str) -> Writer:
        d = self._ingest_dir(ref)
        status = self._resumable(d, ref, total)
        if status is None:
            if d.exists():
                self._discard(d)
            status = self._create(d, ref, total, expected)
        else:
            if total and not status.total:
                write_text(d / TOTAL, str(total))
            if expected and expected != status.expected:
                write_text(d / EXPECTED, expected)
        expected = expected or status.expected
        hasher = new_hasher(expected.partition(":")[0] if expected else SHA256)
        fd = os.open(d / DATA, os.O_WRONLY)
        try:
            offset = hash_file(d / DATA, hasher) if status.offset else 0
            # Anything past the hashed prefix (none, unless the file grew meanwhile) goes.
            os.ftruncate(fd, offset)
        except BaseException:
            os.close(fd)
            raise
        return Writer(
            ref=ref,
            ingest_dir=d,
            fd=fd,
            hasher=hasher,
            offset=offset,
            total=total or status.total,
            expected=expected,
            started_at=status.started_at,
            updated_at=status.updated_at,
            publish=self._publish,
            release=self._locks.release,
        )

    def _resumable(self, d: Path, ref: str, total: int) -> Status | None:
        """The status of an existing ingest ``d`` worth resuming, else None (start afresh)."""
        try:
            status = read_status(d)
        except NotFound:
            return None
        if status.ref != ref:
            log.warning("ingest %s holds ref %r, not %r: starting afresh", d.name, status.ref, ref)
            return None
        if total and status.total and total != status.total:
            log.info("ingest %r: total %d, recorded %d: starting afresh", ref, total, status.total)
            return None
        return status

    def _create(self, d: Path, ref: str, total: int, expected: str) -> Status:
        tmp = self._ingests / f"{_TMP_PREFIX}{d.name}-{secrets.token_hex(4)}"
        tmp.mkdir(mode=0o755)
        try:
            now = time.time_ns()
            (tmp / REF).write_text(ref, encoding="utf-8")
            (tmp / STARTED_AT).write_text(str(now), encoding="utf-8")
            (tmp / UPDATED_AT).write_text(str(now), encoding="utf-8")
            if total:
                (tmp / TOTAL).write_text(str(total), encoding="utf-8")
            if expected:
                (tmp / EXPECTED).write_text(expected, encoding="utf-8")
            os.close(os.open(tmp / DATA, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            os.rename(tmp, d)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Status(ref, 0, total, expected, now, now)

    # -- recovery --------------------------------------------------------------------------

    def _clean_debris(self) -> None:
        """Remove what an interrupted operation left: temp files and dead ingest directories."""
        for entry in os.scandir(self._ingests):
            path = self._ingests / entry.name
            if entry.name.startswith(_TMP_PREFIX) or not entry.is_dir(follow_symlinks=False):
                self._remove(path)
                continue
            for leftover in path.glob(f"*{TMP_SUFFIX}"):
                self._remove(leftover)
            if not (path / DATA).is_file() or not (path / REF).is_file():
                # Its data was committed (or never existed): nothing to resume.
                self._remove(path)
        for algorithm in ALGORITHMS:
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(self._blobs / algorithm):
                    if entry.name.startswith(_TMP_PREFIX) or entry.name.endswith(TMP_SUFFIX):
                        self._remove(self._blobs / algorithm / entry.name)

    @staticmethod
    def _remove(path: Path) -> None:
        log.info("content store: removing leftover %s", path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
