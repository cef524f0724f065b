"""Data files as they were at submit: a content-addressed snapshot of each version.

``submit_task`` reads a task's data files when it is called, so a file rewritten or
deleted afterwards changes nothing for a task already submitted, on every interface:
the task carries the path of its snapshot, never the user's file. A snapshot is made
once per version of a file (its path, inode, size and times), so a file submitted
10,000 times unchanged is read and copied once; two versions with the same content
share one copy (named by its SHA-256).

A file modified within ``_RACY_SECONDS`` of its snapshot is read again at the next
submit: file times tick coarsely (a few ms on Linux, seconds elsewhere), so a rewrite
in the same tick with the same size would otherwise look unchanged (git's "racy
clean" problem).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time

from pymw_core.errors import TaskError

_RACY_SECONDS = 2.0
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
        # (path, dev, inode, size, mtime_ns, ctime_ns) -> (snapshot path, trusted)
        self._known: dict[tuple, tuple[str, bool]] = {}
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
            if known is not None and known[1]:
                return known[0]
            found = self._copy(path, name, before)
            if found is not None:
                snapshot, trusted = found
                with self._lock:
                    self._known[key] = (snapshot, trusted)
                return snapshot
        raise TaskError(f"data file {path!r} kept changing while submit_task read it "
                        f"({_TRIES} times): finish writing it before submitting")

    def _copy(self, path: str, name: str, before: os.stat_result) -> tuple[str, bool] | None:
        """Copy and hash in one pass; None if the file changed meanwhile."""
        folder = self._folder()
        read_at = time.time_ns()
        sha = hashlib.sha256()
        fd, partial = tempfile.mkstemp(prefix=".part-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                while block := src.read(_BLOCK):
                    sha.update(block)
                    out.write(block)
                after = os.fstat(src.fileno())
            if _version(path, after) != _version(path, before):
                os.unlink(partial)
                return None
            home = os.path.join(folder, sha.hexdigest()[:40])
            os.makedirs(home, exist_ok=True)
            snapshot = os.path.join(home, name)
            # As readable as the user's file: a batch system's own daemons may transfer it.
            os.chmod(partial, before.st_mode & 0o644)
            os.replace(partial, snapshot)  # same content: replacing it changes nothing
        except OSError as exc:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise TaskError(f"data file {path!r} cannot be read: {exc}") from exc
        # ctime is in the version's key, so a file whose mtime was set back still
        # differs; only a write in the same tick as the snapshot could go unseen.
        return snapshot, read_at - before.st_mtime_ns > _RACY_SECONDS * 1e9

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


def _version(path: str, st: os.stat_result) -> tuple:
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
