"""The bytes between a master and a worker runtime: length-prefixed pickled tuples.

Standard library only, so the worker side runs wherever a bare Python does. Every
transport (pipes, SSH channels, files) carries the same frames.

Master -> worker::

    ("task", task_id, code, args_blob, extras)
        code: ("f", fn_id, fn_blob_or_None) | ("s", script_name, source)
        extras: None or {"modules": [(name, source, is_pkg)], "files": [(name, path)],
                         "deps": blob}
    ("bye",)

Worker -> master::

    ("hello", {"python": (3, 11, 7), "pid": 123, "cpus": 8, "host": "..."})
    ("done", task_id, ok, blob, stdout, stderr, seconds)
        ok=True: blob is the pickled result; ok=False: blob is pickled (exception, tb_text)
"""

from __future__ import annotations

import pickle
import struct
from typing import Any, BinaryIO

HEADER = struct.Struct("!Q")
PROTOCOL = pickle.HIGHEST_PROTOCOL
# Above this a frame's header and body are written separately, so the body is never copied.
_JOIN_LIMIT = 1 << 16
# Larger writes are sliced: some transports (paramiko) re-slice their whole buffer per packet.
WRITE_SLICE = 1 << 18


def encode(message: tuple) -> bytes:
    """One frame: header and pickled body."""
    body = pickle.dumps(message, PROTOCOL)
    return HEADER.pack(len(body)) + body


def write_message(stream: BinaryIO, message: tuple) -> None:
    """Write one message and flush it."""
    body = pickle.dumps(message, PROTOCOL)
    if len(body) <= _JOIN_LIMIT:
        stream.write(HEADER.pack(len(body)) + body)
    else:
        stream.write(HEADER.pack(len(body)))
        view = memoryview(body)
        for start in range(0, len(body), WRITE_SLICE):
            stream.write(view[start : start + WRITE_SLICE])
    stream.flush()


def read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    """Read ``size`` bytes; None on a clean end of stream before the first byte."""
    data = stream.read(size)
    if data is None:
        data = b""
    if len(data) == size:
        return data
    if not data and size:
        return None
    parts = [data]
    got = len(data)
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            raise EOFError(f"stream ended inside a frame ({got} of {size} bytes)")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def read_message(stream: BinaryIO) -> Any:
    """Read one message; None when the stream ended between frames."""
    header = read_exactly(stream, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    body = read_exactly(stream, size)
    if body is None:
        raise EOFError("stream ended after a frame header")
    return pickle.loads(body)
