"""The ``threads-example`` interface: each worker is a thread in the master's process.

The complete example of docs/writing-an-interface.md. A task travels the same road
as on any interface: packed (``task.payload.message``), moved (here: a queue),
run (PyMW's worker runtime), unpacked (``deliver``, which calls ``task_finished``).

In-process limits, which an interface that runs the runtime in another process
does not have: a task's output is what its own thread writes to ``sys.stdout`` and
``sys.stderr`` (not fds 1 and 2), and the runtime leaves the process's working
directory alone, so tasks do not find their ``data_files`` in their cwd.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from pymw_core.errors import InterfaceError
from pymw_core.unpack import deliver
from pymw_core.worker import Runtime


class Worker:
    """One thread with its own inbox and its own worker runtime."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.runtime = Runtime(chdir=False)
        self.thread = threading.Thread(target=self._serve, name=f"pymw-{name}", daemon=True)
        self.thread.start()

    def __repr__(self) -> str:
        return f"<Worker {self.name}>"

    def _serve(self) -> None:
        while True:
            task = self.inbox.get()
            if task is None:  # cleanup() asked this thread to end
                return
            message = task.payload.message(task.id)  # the frame every transport carries
            reply = self.runtime.run(message)  # never raises for the task's own faults
            deliver(task, reply)  # result or exception (with traceback) -> task_finished


class ThreadInterface:
    """Runs tasks on ``num_threads`` worker threads inside this process (default 2).

    The options of an interface are its constructor's keyword arguments: users write
    ``Master("threads-example", num_threads=4)`` or ``[threads-example]`` in pymw.toml.
    """

    def __init__(self, num_threads: int = 2) -> None:
        if not isinstance(num_threads, int) or isinstance(num_threads, bool) or num_threads < 1:
            raise InterfaceError(f"num_threads must be a whole number >= 1, not {num_threads!r}")
        self._lock = threading.Lock()
        self._closed = False
        self._finished = 0
        self._workers = [Worker(f"thread-{i}") for i in range(num_threads)]
        self._idle = list(self._workers)

    # -- the one required hook --------------------------------------------------------

    def execute_task(self, task: Any, worker: Worker) -> None:
        """Hand ``task`` to ``worker``'s thread and return at once."""
        if self._closed:
            raise InterfaceError("the threads-example interface was cleaned up")
        worker.inbox.put(task)

    # -- optional hooks: without them every task gets worker None, at once -------------

    def get_available_workers(self) -> list[Worker]:
        with self._lock:
            return list(self._idle)

    def reserve_worker(self, worker: Worker) -> None:
        with self._lock:
            self._idle.remove(worker)

    def worker_finished(self, worker: Worker) -> None:
        if worker is None:  # a round whose get_available_workers failed: not a worker of ours
            return
        with self._lock:
            self._idle.append(worker)
            self._finished += 1

    def get_status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "threads": len(self._workers),
                "idle": len(self._idle),
                "tasks_done": self._finished,
            }

    def cleanup(self) -> None:
        """Stop the threads; a task still running is abandoned (the master already said so)."""
        self._closed = True
        for worker in self._workers:
            worker.inbox.put(None)
        for worker in self._workers:
            worker.thread.join(timeout=5)
            worker.runtime.close()
