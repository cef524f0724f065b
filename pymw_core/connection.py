"""The master's side of one streaming worker runtime (a pipe, an SSH channel, a socket).

Interfaces that keep workers running between tasks hand this class the two ends of a
byte stream; it sends ``task`` frames, reads ``done`` frames, keeps the worker's
function cache in step, and turns a broken stream into ``worker_lost`` for exactly the
attempts that were on it. Every frame names its attempt; replies are matched by that
id, and a stop is a ``cancel`` frame the worker acts on itself, so it can only ever
stop the attempt it names.
"""

from __future__ import annotations

import io
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO

from pymw_core import wire
from pymw_core.errors import InterfaceError, TaskCancelledError
from pymw_core.unpack import deliver

if TYPE_CHECKING:
    from pymw_core.task import Attempt


_HELD_INLINE = 64 * 1024  # bytes held before the hello that the reader thread writes itself
_batch = threading.local()  # .pending: connections with frames written and not flushed


@contextmanager
def batched_writes() -> Iterator[None]:
    """Frames sent on this thread inside the block leave with one flush per connection.

    The scheduler matches several tasks a round, often to the same worker: flushed one
    by one, each frame is a system call and a wake-up of the worker; flushed at the
    end of the round, they cross the pipe together. Nested blocks join the outer one.
    """
    if getattr(_batch, "pending", None) is not None:
        yield
        return
    pending: dict[WorkerConnection, None] = {}
    _batch.pending = pending
    try:
        yield
    finally:
        _batch.pending = None
        for connection in pending:
            connection._flush()


class WorkerConnection:
    """Pipelines attempts to one worker runtime, which runs them in the order sent.

    ``on_closed(connection, reason)`` runs once, on the reader thread, when the stream
    ends for any reason; by then every attempt still on it was handed back with
    ``worker_lost``: the running one as started, the rest as never started (all of
    them when the worker never said hello, was refused, or stopped on request).

    Nothing reaches the worker before its ``hello`` is checked: frames sent earlier
    are held here and leave together once it is (one write, no round trip per task),
    so a worker may be offered tasks as soon as it is started. A refused worker (another
    Python minor version: a code object of one version can crash another's
    interpreter) is sent nothing, ever: held attempts go back, as never started, when
    its stream ends, and :meth:`send` raises. ``on_hello(connection)`` runs on the
    reader thread once the hello is checked; ``error`` then says why it was refused, and
    the owner ends the worker.
    """

    def __init__(
        self,
        reader: BinaryIO,
        writer: BinaryIO,
        name: str,
        on_closed: Callable[[WorkerConnection, str], None] | None = None,
        describe_loss: Callable[[], str] | None = None,
        on_hello: Callable[[WorkerConnection], None] | None = None,
    ) -> None:
        self.name = name
        self.hello: dict[str, Any] | None = None
        self.error: str | None = None
        self.closed = False
        self._reader = reader
        self._writer = writer
        # Until the hello is checked frames go here, then to the worker (or nowhere).
        self._out: BinaryIO = io.BytesIO()
        self._on_closed = on_closed
        self._describe_loss = describe_loss
        self._on_hello = on_hello
        self._write_lock = threading.Lock()  # one frame at a time on the stream
        # Guards _in_flight alone, so the reader never waits for a write in progress.
        self._flight_lock = threading.Lock()
        # Attempts on the worker by id, in the order sent: the first one runs.
        self._in_flight: dict[int, Attempt] = {}
        self._functions = wire.FunctionMirror()  # what the worker's cache holds
        self._stopping = False  # the worker is ending on request (a cancel or a kill)
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=self._read_loop, name=f"pymw-read-{name}", daemon=True
        )

    def start(self) -> WorkerConnection:
        """Start reading; the worker's ``hello`` arrives on its own."""
        self._thread.start()
        return self

    def settled(self, timeout: float | None = None) -> bool:
        """Whether the worker's start is settled (hello checked, refused, or stream ended)
        within ``timeout``. ``hello`` and ``error`` are set before that, so a caller
        deciding from them alone may catch a hello whose held frames are still leaving."""
        return self._ready.wait(timeout)

    def wait_ready(self, timeout: float | None = None) -> dict[str, Any]:
        """The worker's ``hello``; raises InterfaceError if it never came or was refused."""
        if not self._ready.wait(timeout):
            raise InterfaceError(f"worker {self.name} did not start within {timeout} s")
        if self.error or self.hello is None:
            raise InterfaceError(self.error or f"worker {self.name} closed before it started")
        return self.hello

    def in_flight(self) -> int:
        """How many attempts are on this worker now."""
        return len(self._in_flight)

    def tasks(self) -> list[Attempt]:
        """The attempts on this worker, the running one first."""
        return list(self._in_flight.values())

    def holds(self, attempt: Attempt) -> bool:
        """Whether ``attempt`` is on this worker (queued or running) and not yet answered."""
        return self._in_flight.get(attempt.id) is attempt

    def send(self, attempt: Attempt, file_map: Callable[[str, str], str] | None = None) -> None:
        """Queue ``attempt`` on this worker. Raises InterfaceError if the stream is closed.

        ``file_map`` is passed to :meth:`Payload.message` for workers on other hosts.
        """
        payload = attempt.payload
        if payload is None:  # stopped and reported before it could leave: nothing to send
            return
        with self._write_lock:
            if self.closed:
                raise InterfaceError(f"worker {self.name} is gone")
            if self.error is not None:
                raise InterfaceError(self.error)
            fresh = self._functions.needs_blob(payload.code)
            message = payload.message(attempt.id, send_code_blob=fresh, file_map=file_map)
            with self._flight_lock:
                # Nothing ahead of it: it starts now; else it waits (0.0: not started yet).
                if self._in_flight:
                    attempt.started_at = 0.0
                else:
                    attempt.started()
                self._in_flight[attempt.id] = attempt
            pending = getattr(_batch, "pending", None)
            try:
                wire.write_message(self._out, message, flush=pending is None)
                if pending is not None:
                    pending[self] = None
            except (OSError, ValueError, EOFError) as exc:
                with self._flight_lock:
                    self._in_flight.pop(attempt.id, None)
                raise InterfaceError(f"worker {self.name} is gone: {exc}") from exc

    def _flush(self) -> None:
        """Send the frames :func:`batched_writes` held back; a broken stream is left for
        the reader to find, which hands back every attempt on it."""
        with self._write_lock:
            if self.closed:
                return
            try:
                self._out.flush()
            except (OSError, ValueError):
                pass

    def cancel(self, attempt: Attempt) -> bool:
        """Ask the worker to stop ``attempt``: dropped if queued there, the worker exits if
        it runs it. False if the attempt is not on this worker (done, or never sent)."""
        with self._write_lock:
            if self.closed or self._in_flight.get(attempt.id) is not attempt:
                return False
            try:
                wire.write_message(self._out, ("cancel", attempt.id))
            except (OSError, ValueError):
                return False
            return True

    def stopping(self) -> None:
        """The owner is about to end this worker on purpose: whatever it holds is not to
        blame, so no attempt on it is charged when the stream ends."""
        self._stopping = True

    def close(self) -> None:
        """Ask the worker to exit once its queued tasks are done."""
        with self._write_lock:
            if self.closed:
                return
            try:
                wire.write_message(self._out, ("bye",))
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
                    deliver(self._answered(message[1]), message)
                elif kind == "dropped":
                    self._answered(message[1]).task_finished(
                        TaskCancelledError("cancelled before it ran"))
                elif kind == "progress":
                    attempt = self._in_flight.get(message[1])
                    if attempt is not None:
                        attempt.set_progress(message[2])
                elif kind == "stopping":
                    self._stopping = True
                elif kind == "hello":
                    self._greet(message[1])
        except Exception as exc:  # a broken stream is a lost worker, whatever broke it
            reason = f"the worker's stream broke: {type(exc).__name__}: {exc}"
        finally:
            self._lost(reason)

    def _answered(self, attempt_id: int) -> Attempt:
        """Take ``attempt_id`` off the worker; the one queued behind it starts now."""
        with self._flight_lock:
            in_flight = self._in_flight
            was_first = next(iter(in_flight), None) == attempt_id
            attempt = in_flight.pop(attempt_id)
            if was_first and in_flight:  # timeouts count from the real start
                nxt = next(iter(in_flight.values()))
                if not nxt.started_at:
                    nxt.started(time.time())
        return attempt

    def _greet(self, hello: dict[str, Any]) -> None:
        have = tuple(hello.get("python", ()))[:2]
        need = tuple(sys.version_info[:2])
        with self._write_lock:
            if have != need:
                self.error = (
                    f"worker {self.name} runs Python "
                    f"{'.'.join(map(str, hello.get('python', ())))} "
                    f"({hello.get('executable')}) but the master runs Python "
                    f"{'.'.join(map(str, sys.version_info[:3]))}: the minor versions must match"
                )
            self.hello = hello
            held = 0 if self.error else self._out.tell()
        if not self.error:
            if held <= _HELD_INLINE:
                self._release_held()
            else:  # a write that may wait on the worker: never on the thread that reads it
                threading.Thread(target=self._release_held, name=f"pymw-held-{self.name}",
                                 daemon=True).start()
        self._ready.set()
        if self._on_hello is not None:
            self._on_hello(self)

    def _release_held(self) -> None:
        """Send what was held until the hello was checked, in order, then write directly."""
        while True:
            with self._write_lock:
                held = self._out.getvalue()  # type: ignore[attr-defined]
                if not held or self.closed:
                    self._out = self._writer
                    return
                self._out = io.BytesIO()  # frames sent meanwhile queue behind these
            try:
                self._writer.write(held)
                self._writer.flush()
            except (OSError, ValueError):  # the reader finds the broken stream: all go back
                with self._write_lock:
                    self._out = self._writer
                return

    def _lost(self, reason: str) -> None:
        with self._write_lock, self._flight_lock:
            self.closed = True
            stranded = list(self._in_flight.values())
            self._in_flight.clear()
        if self._describe_loss is not None:
            try:
                reason = self._describe_loss() or reason
            except Exception:
                pass
        if self.error is None and self.hello is None:
            self.error = f"worker {self.name} failed to start: {reason}"
        self._ready.set()
        # Only a worker that was running something on its own account can be blamed.
        blame = self.hello is not None and self.error is None and not self._stopping
        for index, attempt in enumerate(stranded):
            attempt.worker_lost(reason, started=blame and index == 0)
        if self._on_closed is not None:
            self._on_closed(self, reason)
