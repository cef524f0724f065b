"""A paramiko channel as the two binary streams :class:`WorkerConnection` reads and writes.

Reads go through :class:`io.BufferedReader`, so a frame's header and body cost one
``recv`` between them, not a Python loop per call. Writes go out in slices:
``Channel.sendall`` re-slices its whole buffer after every packet, which turns one
large message into quadratic copying. The channel's stderr shares its window with
stdout, so it is drained continuously or a chatty worker would stall its own frames.
"""

from __future__ import annotations

import collections
import io
import sys
import threading

import paramiko

_READ_BUFFER = 1 << 16
_SEND_SLICE = 1 << 15  # one SSH packet's worth; a slice of a memoryview costs no copy


class _ChannelRaw(io.RawIOBase):
    """Raw reads from a channel's stdout: ``b''`` once the channel closed."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self._channel = channel

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._channel.recv(len(buffer))
        size = len(data)
        buffer[:size] = data
        return size


def reader(channel: paramiko.Channel) -> io.BufferedReader:
    """The worker's frames, as a buffered binary stream."""
    return io.BufferedReader(_ChannelRaw(channel), _READ_BUFFER)


class ChannelWriter:
    """Frames written here leave at each ``flush``, many to a packet, never blocking the writer.

    ``write`` only queues. ``flush`` (the core flushes after every frame, or once per
    scheduling round inside :func:`pymw_core.connection.batched_writes`) sends what is
    queued at once on the calling thread when that cannot wait on the network: nothing
    is being sent, it fits in one packet and the channel's window has room. Otherwise
    (a large message, a full window) a thread of its own sends it, and frames that pile
    up meanwhile join its next packet. Sending inline saves a thread hand-off per
    round, which is most of what small tasks cost here. A failed send closes the
    channel (the reader then hands back every task on it) and fails later writes.
    """

    def __init__(self, channel: paramiko.Channel, name: str) -> None:
        self._channel = channel
        self._chunks: list[bytes] = []
        self._ready = threading.Condition(threading.Lock())
        self._busy = False  # a send is under way (inline or the thread): order is kept
        self._eof = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._pump, name=f"pymw-send-{name}",
                                        daemon=True)
        self._thread.start()

    def write(self, data) -> int:
        with self._ready:
            if self._error is not None:
                raise OSError(f"the SSH channel failed: {self._error}")
            if self._eof:
                raise OSError("the SSH channel was closed for writing")
            self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        with self._ready:
            if not self._chunks or self._busy:
                return  # nothing to send, or the sender takes it with what it sends next
            chunks = self._chunks
            if sum(map(len, chunks)) > _SEND_SLICE or not self._channel.send_ready():
                self._ready.notify()
                return
            self._chunks = []
            self._busy = True
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            sent = self._channel.send(data)
            if sent <= 0:
                raise OSError("the SSH channel closed")
        except Exception as exc:
            self._fail(exc)
            return
        with self._ready:
            if sent < len(data):
                self._chunks.insert(0, data[sent:])
            self._busy = False
            if self._chunks or self._eof:
                self._ready.notify()

    def close(self) -> None:
        """Send what is queued, then EOF: an idle worker exits at once."""
        with self._ready:
            self._eof = True
            self._ready.notify()

    def _fail(self, exc: BaseException) -> None:
        with self._ready:
            self._error = exc
            self._chunks = []
            self._eof = True
            self._busy = False
            self._ready.notify()
        try:
            self._channel.close()
        except Exception:
            pass

    def _pump(self) -> None:
        channel = self._channel
        while True:
            with self._ready:
                while self._busy or (not self._chunks and not self._eof):
                    self._ready.wait()
                if self._error is not None:
                    return
                chunks, self._chunks = self._chunks, []
                eof = self._eof
                self._busy = True
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            try:
                view = memoryview(data)
                done, total = 0, len(data)
                while done < total:
                    sent = channel.send(view[done : done + _SEND_SLICE].tobytes())
                    if sent <= 0:
                        raise OSError("the SSH channel closed")
                    done += sent
                with self._ready:
                    self._busy = False
                    finished = eof and not self._chunks
                if finished:
                    channel.shutdown_write()
                    return
            except Exception as exc:
                self._fail(exc)
                return


class StderrDrain:
    """Reads a channel's stderr on a thread, keeps its tail, and passes it on with a prefix."""

    def __init__(self, channel: paramiko.Channel, prefix: str, lines: int = 40) -> None:
        self._channel = channel
        self._prefix = prefix
        self.tail: collections.deque[str] = collections.deque(maxlen=lines)
        self._thread = threading.Thread(target=self._run, name=f"pymw-stderr-{prefix}",
                                        daemon=True)
        self._thread.start()

    def text(self) -> str:
        """The last lines the worker wrote to its own stderr."""
        return "".join(self.tail).strip()

    def _run(self) -> None:
        pending = b""
        while True:
            try:
                data = self._channel.recv_stderr(1 << 15)
            except Exception:
                data = b""
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._emit(line.decode(errors="replace") + "\n")
        if pending:
            self._emit(pending.decode(errors="replace") + "\n")

    def _emit(self, line: str) -> None:
        self.tail.append(line)
        try:
            sys.stderr.write(f"[{self._prefix}] {line}")
        except (OSError, ValueError):
            pass
