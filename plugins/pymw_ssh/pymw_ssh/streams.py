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

    def readinto(self, buffer) -> int:  # noqa: ANN001 - io's signature
        data = self._channel.recv(len(buffer))
        size = len(data)
        buffer[:size] = data
        return size


def reader(channel: paramiko.Channel) -> io.BufferedReader:
    """The worker's frames, as a buffered binary stream."""
    return io.BufferedReader(_ChannelRaw(channel), _READ_BUFFER)


class ChannelWriter:
    """``write`` sends everything, in packet-sized slices; ``flush`` has nothing to do."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self._channel = channel

    def write(self, data) -> int:  # noqa: ANN001 - bytes-like
        view = memoryview(data).cast("B")
        send = self._channel.send
        total = len(view)
        done = 0
        while done < total:
            sent = send(bytes(view[done : done + _SEND_SLICE]))
            if sent <= 0:
                raise OSError("the SSH channel closed")
            done += sent
        return total

    def flush(self) -> None:
        pass

    def close(self) -> None:
        try:
            self._channel.shutdown_write()  # EOF: an idle worker exits at once
        except (OSError, EOFError, paramiko.SSHException):
            pass


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
