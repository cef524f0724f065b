"""The worker runtime as one self-contained zip, for workers that have nothing installed.

``python pymw-runtime-<hash>.zip`` runs :func:`pymw_core.worker.main`; the zip holds the
worker's modules and cloudpickle, so a bare Python of the master's minor version
is all a remote host or a batch node needs. Fixed timestamps make the bytes, and so
the hash that names the file, the same for the same code: remote caches stay valid.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import zipfile

import cloudpickle

import pymw_core

_WORKER_MODULES = ("capture.py", "errors.py", "guardian.py", "sources.py", "wire.py", "worker.py")
_MAIN = "from pymw_core.worker import main\nmain()\n"
_STUB_INIT = '"""Worker-side subset of pymw_core (uploaded runtime)."""\n'
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


@functools.lru_cache(maxsize=1)
def runtime_zip() -> tuple[str, bytes]:
    """``(file_name, zip_bytes)`` of the worker runtime; the name carries its content hash."""
    buffer = io.BytesIO()
    core_dir = os.path.dirname(pymw_core.__file__)
    pickle_dir = os.path.dirname(cloudpickle.__file__)
    with zipfile.ZipFile(buffer, "w") as archive:
        _add(archive, "__main__.py", _MAIN.encode())
        _add(archive, "pymw_core/__init__.py", _STUB_INIT.encode())
        for name in _WORKER_MODULES:
            with open(os.path.join(core_dir, name), "rb") as fh:
                _add(archive, f"pymw_core/{name}", fh.read())
        for name in sorted(os.listdir(pickle_dir)):
            if name.endswith(".py"):
                with open(os.path.join(pickle_dir, name), "rb") as fh:
                    _add(archive, f"cloudpickle/{name}", fh.read())
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()[:16]
    return f"pymw-runtime-{digest}.zip", data
