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
    """Frames written here are sent by a thread of their own, many to a packet.

    ``write`` only queues, so the master's scheduler thread never waits on the network,
    and the frames that pile up while a packet is on its way leave together in the
    next one: at high task rates a packet carries several tasks. A failed send closes
    the channel (the reader then hands back every task on it) and fails later writes.
    """

    def __init__(self, channel: paramiko.Channel, name: str) -> None:
        self._channel = channel
        self._chunks: list[bytes] = []
        self._ready = threading.Condition(threading.Lock())
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
            self._ready.notify()
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """Send what is queued, then EOF: an idle worker exits at once."""
        with self._ready:
            self._eof = True
            self._ready.notify()

    def _pump(self) -> None:
        channel = self._channel
        while True:
            with self._ready:
                while not self._chunks and not self._eof:
                    self._ready.wait()
                chunks, self._chunks = self._chunks, []
                eof = self._eof
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            try:
                view = memoryview(data)
                done, total = 0, len(data)
                while done < total:
                    sent = channel.send(view[done : done + _SEND_SLICE].tobytes())
                    if sent <= 0:
                        raise OSError("the SSH channel closed")
                    done += sent
                if eof and not self._chunks:
                    channel.shutdown_write()
                    return
            except Exception as exc:
                with self._ready:
                    self._error = exc
                    self._chunks = []
                try:
                    channel.close()
                except Exception:
                    pass
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
