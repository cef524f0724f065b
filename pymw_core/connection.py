"""The master's side of one streaming worker runtime (a pipe, an SSH channel, a socket).

Interfaces that keep workers running between tasks hand this class the two ends of a
byte stream; it sends ``task`` frames, reads ``done`` frames, keeps the worker's
function cache in step, and turns a broken stream into ``worker_lost`` for exactly the
tasks that were on it.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from pymw_core import wire
from pymw_core.errors import InterfaceError
from pymw_core.unpack import deliver

if TYPE_CHECKING:
    from pymw_core.task import Task


class WorkerConnection:
    """Pipelines tasks to one worker runtime; results come back in the order sent.

    ``on_closed(connection, reason)`` runs once, on the reader thread, when the stream
    ends for any reason; by then every task still on it was handed back with
    ``worker_lost`` (the first as started, the rest as never started).
    """

    def __init__(
        self,
        reader: BinaryIO,
        writer: BinaryIO,
        name: str,
        on_closed: Callable[[WorkerConnection, str], None] | None = None,
        describe_loss: Callable[[], str] | None = None,
    ) -> None:
        self.name = name
        self.hello: dict[str, Any] | None = None
        self.error: str | None = None
        self.closed = False
        self._reader = reader
        self._writer = writer
        self._on_closed = on_closed
        self._describe_loss = describe_loss
        self._write_lock = threading.Lock()
        self._in_flight: collections.deque[Task] = collections.deque()
        self._functions_sent: set[int] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=self._read_loop, name=f"pymw-read-{name}", daemon=True
        )

    def start(self) -> WorkerConnection:
        """Start reading; the worker's ``hello`` arrives on its own."""
        self._thread.start()
        return self

    def wait_ready(self, timeout: float | None = None) -> dict[str, Any]:
        """The worker's ``hello``; raises InterfaceError if it never came or was refused."""
        if not self._ready.wait(timeout):
            raise InterfaceError(f"worker {self.name} did not start within {timeout} s")
        if self.error or self.hello is None:
            raise InterfaceError(self.error or f"worker {self.name} closed before it started")
        return self.hello

    def in_flight(self) -> int:
        """How many tasks are on this worker now."""
        return len(self._in_flight)

    def tasks(self) -> list[Task]:
        """The tasks on this worker, the running one first."""
        return list(self._in_flight)

    def send(self, task: Task, file_map: Callable[[str, str], str] | None = None) -> None:
        """Queue ``task`` on this worker. Raises InterfaceError if the stream is closed.

        ``file_map`` is passed to :meth:`Payload.message` for workers on other hosts.
        """
        payload = task.payload
        with self._write_lock:
            if self.closed:
                raise InterfaceError(f"worker {self.name} is gone")
            code = payload.code
            first = code[0] == "f" and code[1] not in self._functions_sent
            message = payload.message(task.id, send_code_blob=first, file_map=file_map)
            # Nothing ahead of it: it starts now; else it waits (0.0: not started yet).
            task.execute_time = 0.0 if self._in_flight else time.time()
            self._in_flight.append(task)
            try:
                wire.write_message(self._writer, message)
            except (OSError, ValueError, EOFError) as exc:
                self._in_flight.pop()
                raise InterfaceError(f"worker {self.name} is gone: {exc}") from exc
            if first:
                self._functions_sent.add(code[1])

    def close(self) -> None:
        """Ask the worker to exit once its queued tasks are done."""
        with self._write_lock:
            if self.closed:
                return
            try:
                wire.write_message(self._writer, ("bye",))
            except (OSError, ValueError):
                pass

    def _read_loop(self) -> None:
        reason = "the worker's stream ended"
        try:
            while True:
                message = wire.read_message(self._reader)
                if message is None:
                    break
                kind = message[0]
                if kind == "done":
                    task = self._in_flight.popleft()
                    if self._in_flight:  # the next one starts now (timeouts count from here)
                        self._in_flight[0].execute_time = time.time()
                    deliver(task, message)
                elif kind == "hello":
                    self._greet(message[1])
        except Exception as exc:  # a broken stream is a lost worker, whatever broke it
            reason = f"the worker's stream broke: {type(exc).__name__}: {exc}"
        finally:
            self._lost(reason)

    def _greet(self, hello: dict[str, Any]) -> None:
        have = tuple(hello.get("python", ()))[:2]
        need = tuple(sys.version_info[:2])
        if have != need:
            self.error = (
                f"worker {self.name} runs Python {'.'.join(map(str, hello.get('python', ())))} "
                f"({hello.get('executable')}) but the master runs Python "
                f"{'.'.join(map(str, sys.version_info[:3]))}: the minor versions must match"
            )
        self.hello = hello
        self._ready.set()

    def _lost(self, reason: str) -> None:
        with self._write_lock:
            self.closed = True
            stranded = list(self._in_flight)
            self._in_flight.clear()
        if self._describe_loss is not None:
            try:
                reason = self._describe_loss() or reason
            except Exception:
                pass
        if self.error is None and self.hello is None:
            self.error = f"worker {self.name} failed to start: {reason}"
        self._ready.set()
        for index, task in enumerate(stranded):
            task.worker_lost(reason, started=index == 0)
        if self._on_closed is not None:
            self._on_closed(self, reason)
