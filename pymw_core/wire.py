"""The bytes between a master and a worker runtime: length-prefixed pickled tuples.

Standard library only, so the worker side runs wherever a bare Python does. Every
transport (pipes, SSH channels, files) carries the same frames.

Master -> worker::

    ("task", attempt_id, code, args_blob, extras)
        code: ("f", fn_id, fn_blob_or_None) | ("s", script_name, source)
        extras: None or {"modules": [(name, source, is_pkg)], "imports": [name],
                         "files": [(name, path)], "deps": blob, "kwargs": blob}
    ("cancel", attempt_id)   stop that attempt: drop it if queued, exit if it runs
    ("bye",)

Worker -> master::

    ("hello", {"python": (3, 11, 7), "pid": 123, "cpus": 8, "host": "..."})
    ("done", attempt_id, ok, blob, stdout, stderr, seconds)
        ok=True: blob is the pickled result; ok=False: blob is pickled (exception, tb_text)
    ("dropped", attempt_id)  a cancelled attempt that never ran
    ("stopping", attempt_id) the worker exits now, as asked, in the middle of that attempt
    ("progress", attempt_id, ratio)  the running task called pymw_set_progress(ratio)

Every message about a task names its attempt: a late or stray frame can never be
taken for another run's. Function blobs are sent once per worker: both sides keep the
last ``FUNCTION_CACHE`` function ids in the same least-recently-used order (updated as
frames are sent and received), so the master knows exactly which ones the worker holds.

A frame is an 8-byte big-endian length and that many bytes of pickle. Blobs of
64 KiB or more in the message's tuples travel out of band (pickle protocol 5): the
length then has its top bit set, and the pickle is followed by the number of blobs,
their lengths and their raw bytes. Re-pickling a blob inside the message would copy
it once more on each side; out of band it goes from the sender's object to the
stream, and from the stream into the receiver's object, untouched.

A task's arguments and a result are pickles (``args_blob``, ``blob``) of their own.
When such a value holds big ``bytes`` (itself, or in it as tuples nest), :func:`dumps`
keeps them out of its pickle: the blob is then the tuple ``(pickle, big, ...)``, whose
bytes objects are the value's own (no copy at submit) and cross out of band as above;
:func:`loads` hands the ones read from the stream back to the value (no copy either).
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from typing import Any, BinaryIO

HEADER = struct.Struct("!Q")
FUNCTION_CACHE = 256  # function blobs a streaming worker keeps (see the module docstring)
PROTOCOL = pickle.HIGHEST_PROTOCOL
OUT_OF_BAND = 1 << 16  # blobs this big or bigger are written beside the pickle, not in it
_BLOBS_FOLLOW = 1 << 63  # set in a frame's length when out-of-band blobs follow its pickle
# Above this a frame's header and body are written separately, so the body is never copied.
_JOIN_LIMIT = 1 << 16
# Larger writes are sliced: some transports (paramiko) re-slice their whole buffer per packet.
WRITE_SLICE = 1 << 18
# Streams that take a big write whole (into a pipe: the reader wakes once, not per slice).
_WHOLE_WRITES = (io.BufferedWriter, io.FileIO, io.BytesIO)


class FunctionMirror:
    """The function ids one worker holds, in the worker's own least-recently-used order.

    The master calls :meth:`needs_blob` once per ``task`` frame it sends to that
    worker, in sending order; the worker's runtime updates its cache the same way as
    it receives them, so both agree on which blobs it has without asking.
    """

    __slots__ = ("_ids", "size")

    def __init__(self, size: int = FUNCTION_CACHE) -> None:
        self._ids: collections.OrderedDict[int, None] = collections.OrderedDict()
        self.size = size

    def needs_blob(self, code: tuple) -> bool:
        """Record a frame carrying ``code``; True if it must carry the function's blob."""
        if code[0] != "f":
            return False
        ids, fn_id = self._ids, code[1]
        if fn_id in ids:
            ids.move_to_end(fn_id)
            return False
        ids[fn_id] = None
        if len(ids) > self.size:
            ids.popitem(last=False)
        return True


def dumps(value: Any, dump: Any = None) -> bytes | tuple:
    """``value`` pickled; big bytes in it stay beside the pickle (see the module docstring).

    ``dump`` pickles what holds no big bytes (default: :func:`pickle.dumps`).
    """
    wrapped = _wrap_big_blobs((value,))[0]
    if wrapped is value:
        return (dump or pickle.dumps)(value, PROTOCOL)
    buffers: list[bytes] = []

    def beside(buffer: pickle.PickleBuffer) -> bool:
        """Only our bytes go beside; another buffer (an array's) stays in the pickle."""
        held = buffer.raw().obj
        if type(held) is not bytes:
            return True
        buffers.append(held)
        return False

    body = pickle.dumps(wrapped, PROTOCOL, buffer_callback=beside)
    return (body, *buffers)


def loads(blob: bytes | tuple) -> Any:
    """The value :func:`dumps` pickled (a plain pickle too)."""
    if type(blob) is tuple:
        return pickle.loads(blob[0], buffers=blob[1:])
    return pickle.loads(blob)


def blob_size(blob: bytes | tuple | None) -> int:
    """Bytes a blob from :func:`dumps` puts on the wire."""
    if type(blob) is tuple:
        return sum(len(part) for part in blob)
    return len(blob or b"")


def joined(blob: bytes | tuple) -> bytes:
    """The plain pickle of what ``blob`` holds: the same bytes whichever way it was made."""
    return pickle.dumps(loads(blob), PROTOCOL) if type(blob) is tuple else blob


def encode(message: tuple) -> bytes:
    """One frame: header and pickled body (every blob in band: one object to store)."""
    body = pickle.dumps(message, PROTOCOL)
    return HEADER.pack(len(body)) + body


def write_message(stream: BinaryIO, message: tuple, flush: bool = True) -> None:
    """Write one message and flush it (``flush=False``: the caller flushes later)."""
    if not _has_big_blob(message):
        body = pickle.dumps(message, PROTOCOL)
        if len(body) <= _JOIN_LIMIT:
            stream.write(HEADER.pack(len(body)) + body)
        else:
            stream.write(HEADER.pack(len(body)))
            _write_sliced(stream, body)
        if flush:
            stream.flush()
        return
    blobs: list[pickle.PickleBuffer] = []
    body = pickle.dumps(_wrap_big_blobs(message), PROTOCOL, buffer_callback=blobs.append)
    views = [blob.raw() for blob in blobs]
    lengths = struct.pack(f"!{len(views) + 1}Q", len(views), *(view.nbytes for view in views))
    stream.write(HEADER.pack(len(body) | _BLOBS_FOLLOW) + body + lengths)
    for view in views:
        _write_sliced(stream, view)
    stream.flush()


def _write_sliced(stream: BinaryIO, data: Any) -> None:
    view = memoryview(data)
    if isinstance(stream, _WHOLE_WRITES):  # a pipe takes it in one call, one wake-up
        stream.write(view)
        return
    for start in range(0, view.nbytes, WRITE_SLICE):
        stream.write(view[start : start + WRITE_SLICE])


def _has_big_blob(message: tuple) -> bool:
    for item in message:
        kind = type(item)
        if kind is bytes:
            if len(item) >= OUT_OF_BAND:
                return True
        elif kind is tuple and _has_big_blob(item):
            return True
    return False


def _wrap_big_blobs(message: tuple) -> tuple:
    """The message with each big blob (in it or its nested tuples) marked for out of band;
    ``message`` itself when it holds none."""
    if not _has_big_blob(message):
        return message
    return tuple(
        pickle.PickleBuffer(item) if type(item) is bytes and len(item) >= OUT_OF_BAND
        else _wrap_big_blobs(item) if type(item) is tuple
        else item
        for item in message
    )


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


def _read_body(stream: BinaryIO, size: int) -> bytes:
    body = read_exactly(stream, size)
    if body is None:
        raise EOFError("stream ended after a frame header")
    return body


def read_message(stream: BinaryIO) -> Any:
    """Read one message; None when the stream ended between frames."""
    header = read_exactly(stream, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if not size & _BLOBS_FOLLOW:
        return pickle.loads(_read_body(stream, size))
    body = _read_body(stream, size & ~_BLOBS_FOLLOW)
    (count,) = HEADER.unpack(_read_body(stream, HEADER.size))
    lengths = struct.unpack(f"!{count}Q", _read_body(stream, HEADER.size * count))
    return pickle.loads(body, buffers=[_read_body(stream, length) for length in lengths])
