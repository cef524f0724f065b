"""Data files as they were at submit: a content-addressed snapshot of each version.

``submit_task`` reads a task's data files when it is called, so a file rewritten or
deleted afterwards changes nothing for a task already submitted, on every interface:
the task carries the path of its snapshot, never the user's file. A snapshot is made
once per version of a file (its path, inode, size and times), so a file submitted
10,000 times unchanged is read and copied once; two versions with the same content
share one copy (named by its SHA-256).

File times tick coarsely (a few ms on Linux, whole seconds on some file systems), so
a rewrite in the same tick with the same size would look unchanged (git's "racy
clean" problem). A snapshot taken within a tick's margin of the file's mtime is not
trusted: the next submit reads the file again and compares its hash (a copy is made
only when the content differs), until the file is old enough to trust.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time

from pymw_core.errors import TaskError

_RACY_NS = 50_000_000  # a mtime this close to the read: the same tick may hide a rewrite
_RACY_COARSE_NS = 2_000_000_000  # the same, on a file system that keeps whole seconds
_BLOCK = 1 << 20
_TRIES = 3  # a file that changes while it is being read is read again, this many times


class Snapshots:
    """The snapshots of one master, in a private directory removed by :meth:`close`.

    ``parent``: where that directory goes (default: the temporary directory). An
    interface whose transport cannot read the master's temporary directory (a batch
    system's daemons in a chroot, nodes sharing only the run directory) names a
    better place as its ``staging_dir``.
    """

    def __init__(self, parent: str | None = None) -> None:
        self._parent = parent
        self._lock = threading.Lock()
        self._dir: str | None = None
        # (path, dev, inode, size, mtime_ns, ctime_ns) -> (snapshot path, digest, trusted)
        self._known: dict[tuple, tuple[str, str, bool]] = {}
        self._closed = False

    def take(self, path: str, name: str) -> str:
        """The path of a snapshot of ``path`` (absolute) as it is now, named ``name``."""
        for _ in range(_TRIES):
            try:
                before = os.stat(path)
            except OSError as exc:
                raise TaskError(f"data file {path!r} cannot be read: {exc}") from exc
            key = _version(path, before)
            with self._lock:
                known = self._known.get(key)
            if known is not None and known[2]:
                return known[0]
            found = self._read(path, name, before, known)
            if found is not None:
                with self._lock:
                    self._known[key] = found
                return found[0]
        raise TaskError(f"data file {path!r} kept changing while submit_task read it "
                        f"({_TRIES} times): finish writing it before submitting")

    def _read(self, path: str, name: str, before: os.stat_result,
              known: tuple[str, str, bool] | None) -> tuple[str, str, bool] | None:
        """Hash the file, copying it in the same pass unless ``known`` (a snapshot of the
        same version, not yet trusted) turns out to hold the same bytes. None if the file
        changed meanwhile."""
        read_at = time.time_ns()
        sha = hashlib.sha256()
        partial = None
        out = None
        try:
            if known is None:
                fd, partial = tempfile.mkstemp(prefix=".part-", dir=self._folder())
                out = os.fdopen(fd, "wb")
            try:
                with open(path, "rb") as src:
                    while block := src.read(_BLOCK):
                        sha.update(block)
                        if out is not None:
                            out.write(block)
                    after = os.fstat(src.fileno())
            finally:
                if out is not None:
                    out.close()
            if _version(path, after) != _version(path, before):
                return _drop(partial)
            digest = sha.hexdigest()
            margin = _RACY_COARSE_NS if before.st_mtime_ns % 1_000_000_000 == 0 else _RACY_NS
            # ctime is in the version's key, so a file whose mtime was set back differs
            # anyway; only a rewrite within the same tick could go unseen.
            trusted = read_at - before.st_mtime_ns > margin
            if known is not None:
                if known[1] == digest:
                    return known[0], digest, trusted
                return self._read(path, name, before, None)  # new bytes: a new snapshot
            home = os.path.join(self._folder(), digest[:40])
            os.makedirs(home, exist_ok=True)
            snapshot = os.path.join(home, name)
            # As readable as the user's file: a batch system's own daemons may transfer it.
            os.chmod(partial, before.st_mode & 0o644)  # type: ignore[arg-type]
            os.replace(partial, snapshot)  # type: ignore[arg-type]  # same bytes if it exists
            return snapshot, digest, trusted
        except OSError as exc:
            _drop(partial)
            raise TaskError(f"data file {path!r} cannot be read: {exc}") from exc

    def _folder(self) -> str:
        with self._lock:
            if self._closed:
                raise TaskError("this master is closed")
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix="pymw-files-", dir=self._parent)
                os.chmod(self._dir, 0o711)  # its files can be reached, never listed
            return self._dir

    def close(self) -> None:
        """Remove every snapshot: the master's tasks are over."""
        with self._lock:
            self._closed = True
            folder, self._dir = self._dir, None
            self._known.clear()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _drop(partial: str | None) -> None:
    if partial is not None:
        try:
            os.unlink(partial)
        except OSError:
            pass


def _version(path: str, st: os.stat_result) -> tuple:
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
