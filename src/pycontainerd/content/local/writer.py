"""One ingest: the files of its directory, and the open writer that appends to it.

An ingest directory (``ingest/<sha256 of ref>/``) holds::

    ref         the ref, verbatim (the directory name is only its hash)
    data        the bytes received so far; its size *is* the ingest's offset
    startedat   nanoseconds since the epoch, decimal
    updatedat   same; rewritten on close, so the data file's mtime may be newer
    total       expected size, when the client gave one
    expected    expected digest, when the client gave one

Invariants the rest of the package relies on:

* ``data`` only ever grows by appends (or is truncated by an explicit :meth:`Writer.truncate`),
  so whatever a crash leaves on disk is a prefix of what the client sent. Resuming re-hashes
  that prefix instead of trusting any saved hash state, which is what makes an ingest survive
  ``kill -9`` of the daemon without fsyncing each write.
* Small files are replaced by writing ``<name>.tmp`` and renaming it, so a reader sees the old
  or the new text, never a torn one; leftover ``.tmp`` files are removed when a store opens.
* ``data`` leaves the directory only by a rename into ``blobs/`` at commit, after fsync and
  after the size and digest checks.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from pycontainerd.core.content import SHA256, Status, parse_digest
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from _typeshed import ReadableBuffer

log = logging.getLogger(__name__)

REF = "ref"
DATA = "data"
STARTED_AT = "startedat"
UPDATED_AT = "updatedat"
TOTAL = "total"
EXPECTED = "expected"
TMP_SUFFIX = ".tmp"
ALGORITHMS = ("sha256", "sha384", "sha512")

_READ_CHUNK = 1 << 20
# Below this size handing the hash to another thread costs more than it saves.
_PARALLEL_HASH_MIN = 256 << 10

_pool_mu = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _hash_pool() -> ThreadPoolExecutor:
    # hashlib and os.pwrite both release the GIL on large buffers, so hashing a chunk on
    # another thread while this one writes it overlaps the two (measured: ~1.3x on 1 MiB chunks).
    global _pool
    with _pool_mu:
        if _pool is None:
            workers = min(4, os.cpu_count() or 1)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="content-hash")
        return _pool


def new_hasher(algorithm: str = SHA256) -> hashlib._Hash:
    """A fresh hash object for a digest algorithm (sha256, sha384 or sha512)."""
    if algorithm not in ALGORITHMS:
        raise InvalidArgument(f"unsupported digest algorithm {algorithm}")
    return hashlib.new(algorithm)


def digest_of(hasher: hashlib._Hash) -> str:
    """``<algorithm>:<hex>`` of what ``hasher`` has seen so far."""
    return f"{hasher.name}:{hasher.hexdigest()}"


def hash_file(path: Path, hasher: hashlib._Hash, limit: int = -1) -> int:
    """Feed the first ``limit`` bytes of ``path`` (all when negative) to ``hasher``; returns the count."""
    buf = bytearray(_READ_CHUNK)
    view = memoryview(buf)
    done = 0
    with open(path, "rb", buffering=0) as f:
        while limit < 0 or done < limit:
            want = _READ_CHUNK if limit < 0 else min(_READ_CHUNK, limit - done)
            n = f.readinto(view[:want])
            if not n:
                break
            hasher.update(view[:n])
            done += n
    return done


def write_text(path: Path, text: str) -> None:
    """Replace a small file atomically (``<name>.tmp`` then rename); no fsync, see module doc."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_ns(path: Path, fallback: int) -> int:
    try:
        return int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return fallback


def read_status(ingest_dir: Path) -> Status:
    """The status of the ingest stored in ``ingest_dir``.

    A missing or unreadable timestamp falls back to the data file's mtime and a corrupt
    ``total`` reads as unknown (0): the bytes matter, the bookkeeping can be approximate.

    Raises:
        NotFound: the directory has no ``data`` or no ``ref`` (absent, or left half removed).
    """
    try:
        st = os.stat(ingest_dir / DATA)
        ref = (ingest_dir / REF).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        raise NotFound(f"ingest {ingest_dir.name}") from None
    try:
        total = int((ingest_dir / TOTAL).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        total = 0
    try:
        expected = (ingest_dir / EXPECTED).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        expected = ""
    started = _read_ns(ingest_dir / STARTED_AT, st.st_mtime_ns)
    # updatedat is only rewritten on close; data's mtime moves with every write.
    updated = max(_read_ns(ingest_dir / UPDATED_AT, started), st.st_mtime_ns)
    return Status(ref, st.st_size, total, expected, started, updated)


class Writer:
    """An open, exclusive writer on one ingest.

    Obtained from :meth:`LocalStore.writer`, which holds the ref's lock on its behalf until
    :meth:`close` or :meth:`commit`. Writes go straight to the data file (no user-space
    buffer), so the store's ``status(ref)`` always agrees with :attr:`offset`.
    """

    def __init__(
        self,
        *,
        ref: str,
        ingest_dir: Path,
        fd: int,
        hasher: hashlib._Hash,
        offset: int,
        total: int,
        expected: str,
        started_at: int,
        updated_at: int,
        publish: Callable[[Path, str], None],
        release: Callable[[str], None],
    ) -> None:
        self._ref = ref
        self._dir = ingest_dir
        self._fd: int | None = fd
        self._hasher = hasher
        self._offset = offset
        self._total = total
        self._expected = expected
        self._started_at = started_at
        self._updated_at = updated_at
        self._publish = publish
        self._release = release

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def ref(self) -> str:
        """The ingest's ref."""
        return self._ref

    @property
    def offset(self) -> int:
        """Bytes written so far (including those found on disk when resuming)."""
        return self._offset

    @property
    def data_path(self) -> Path:
        """The file the bytes are appended to (renamed into ``blobs/`` at commit: an open
        descriptor on it stays valid across the commit)."""
        return self._dir / DATA

    def digest(self) -> str:
        """Digest of the bytes written so far; still valid after commit or close."""
        return digest_of(self._hasher)

    def status(self) -> Status:
        """Progress of this ingest, as the writer sees it."""
        return Status(
            ref=self._ref,
            offset=self._offset,
            total=self._total,
            expected=self._expected,
            started_at=self._started_at,
            updated_at=self._updated_at,
        )

    def _open_fd(self) -> int:
        if self._fd is None:
            raise FailedPrecondition(f"writer for ref {self._ref} is closed")
        return self._fd

    def write(self, data: ReadableBuffer) -> None:
        """Append ``data`` to the ingest.

        All or nothing: if the write fails (disk full...), the file and the running hash are
        put back to where they were before the call, so the writer stays usable.

        Raises:
            FailedPrecondition: the writer was closed or committed.
        """
        fd = self._open_fd()
        view = memoryview(data).cast("B")
        if not view:
            return
        before = self._hasher.copy()
        pending = _hash_pool().submit(self._hasher.update, view) if len(view) >= _PARALLEL_HASH_MIN else None
        if pending is None:
            self._hasher.update(view)
        pos = self._offset
        try:
            rest = view
            while rest:
                n = os.pwrite(fd, rest, pos)
                pos += n
                rest = rest[n:]
        except BaseException:
            if pending is not None:
                pending.result()
            self._hasher = before
            os.ftruncate(fd, self._offset)
            raise
        if pending is not None:
            pending.result()
        self._offset = pos
        self._updated_at = time.time_ns()

    def truncate(self, size: int) -> None:
        """Drop everything after the first ``size`` bytes (0 restarts the ingest).

        Truncating to 0 is cheap; other sizes re-hash the kept prefix.

        Raises:
            InvalidArgument: ``size`` is negative or beyond the current offset.
            FailedPrecondition: the writer was closed or committed.
        """
        fd = self._open_fd()
        if size < 0 or size > self._offset:
            raise InvalidArgument(f"cannot truncate ingest {self._ref} to {size}: offset is {self._offset}")
        os.ftruncate(fd, size)
        hasher = new_hasher(self._hasher.name)
        if size:
            hash_file(self._dir / DATA, hasher, size)
        self._hasher = hasher
        self._offset = size
        self._updated_at = time.time_ns()

    def commit(self, size: int, expected: str) -> str:
        """Verify the ingest and make it a blob; returns the blob's digest.

        Whatever the outcome, the writer is closed and its ref released afterwards, as in
        containerd. After a size or digest mismatch the ingest stays on disk, resumable; after
        ``AlreadyExists`` it is removed (the blob it would have become is already there).

        Args:
            size: expected size; 0 skips the check.
            expected: expected digest; "" skips the check. Of another algorithm than the
                writer's, the data is re-hashed with that algorithm.

        Raises:
            FailedPrecondition: closed writer, or size or digest mismatch.
            AlreadyExists: a blob with this digest exists.
            InvalidArgument: ``expected`` is not a digest.
        """
        if expected:
            parse_digest(expected)
        fd = self._open_fd()
        self._fd = None
        done = False
        try:
            try:
                os.fsync(fd)
                on_disk = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if on_disk != self._offset:
                # Something else touched the file: the running hash cannot be trusted.
                self._hasher = new_hasher(self._hasher.name)
                self._offset = hash_file(self._dir / DATA, self._hasher)
            if size > 0 and size != self._offset:
                raise FailedPrecondition(f"unexpected commit size {self._offset}, expected {size}")
            algorithm = expected.partition(":")[0] if expected else self._hasher.name
            if algorithm != self._hasher.name:
                self._hasher = new_hasher(algorithm)
                hash_file(self._dir / DATA, self._hasher)
            digest = self.digest()
            if expected and expected != digest:
                raise FailedPrecondition(f"unexpected commit digest {digest}, expected {expected}")
            try:
                self._publish(self._dir / DATA, digest)
            except AlreadyExists:
                done = True
                raise
            done = True
            return digest
        finally:
            if done:
                # Either the data is now the blob or an identical blob already existed:
                # nothing in the directory is worth resuming.
                shutil.rmtree(self._dir, ignore_errors=True)
            else:
                self._save_updated_at()
            self._release(self._ref)

    def close(self) -> None:
        """Release the ref; the ingest stays on disk for a later writer to resume.

        Closing twice, or after commit, does nothing.
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # containerd syncs here too: one fsync per writer session, not per write.
            os.fsync(fd)
        finally:
            os.close(fd)
            self._save_updated_at()
            self._release(self._ref)

    def _save_updated_at(self) -> None:
        try:
            write_text(self._dir / UPDATED_AT, str(self._updated_at))
        except OSError as exc:
            # Only bookkeeping: status() falls back to the data file's mtime.
            log.warning("ingest %s: cannot record updatedat: %s", self._ref, exc)
