"""Interfaces for the contract kit's own tests: a sound one, and copies of it that each
break one rule of docs/writing-an-interface.md, as an author could.

Copied next to a child pytest's test file (tests/testing/test_kit.py) and imported from
there; nothing of the suite's own is imported here. ``Procs`` is written from the
guide alone: one worker process per slot on a pair of pipes, its own free list.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading

from pymw_local import LocalInterface

from pymw_core import wire
from pymw_core.errors import InterfaceError
from pymw_core.unpack import deliver
from pymw_core.worker import Runtime


class Slot:
    """One worker process, running one task at a time."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.scratch = tempfile.mkdtemp(prefix=f"procs-w{index}-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pymw_core.worker", "--scratch", self.scratch],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        self.task = None

    def __repr__(self) -> str:
        return f"<slot {self.index} pid={self.proc.pid}>"


class Procs:
    """A sound interface: ``num_workers`` processes, each one task at a time."""

    def __init__(self, num_workers: int = 2) -> None:
        self.lock = threading.Lock()
        self.master = None
        self.closed = False
        self.slots: list[Slot] = []
        self.free: list[Slot] = []
        self.started_once: set[int] = set()
        for index in range(num_workers):
            self.start(index)

    # -- processes ----------------------------------------------------------------------

    def start(self, index: int) -> None:
        slot = Slot(index)
        with self.lock:
            self.slots.append(slot)
        threading.Thread(target=self.read, args=(slot,), daemon=True).start()

    def read(self, slot: Slot) -> None:
        try:
            while True:
                message = wire.read_message(slot.proc.stdout)
                if message is None:
                    break
                if message[0] == "hello":
                    self.ready(slot)
                elif message[0] == "done":
                    task, slot.task = slot.task, None
                    self.finish(task, message)
        except Exception:
            pass
        self.died(slot)

    def ready(self, slot: Slot) -> None:
        """A process said hello: its slot is free (again, for a replacement)."""
        with self.lock:
            self.free.append(slot)
            self.started_once.add(slot.index)
            master = self.master
        if master is not None:
            master.workers_changed()

    def finish(self, task, reply) -> None:
        deliver(task, reply)

    def died(self, slot: Slot) -> None:
        slot.proc.wait()
        shutil.rmtree(slot.scratch, ignore_errors=True)
        with self.lock:
            if slot in self.slots:
                self.slots.remove(slot)
            if slot in self.free:
                self.free.remove(slot)
            task, slot.task = slot.task, None
            closed = self.closed
        if task is not None:
            self.lost(task, f"worker process {slot.proc.pid} ended")
        if not closed:
            self.start(slot.index)

    def lost(self, task, reason: str) -> None:
        task.worker_lost(reason)

    def write(self, slot: Slot, data: bytes) -> None:
        fd = slot.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    def message(self, task) -> tuple:
        return task.payload.message(task.id)

    # -- hooks ------------------------------------------------------------------------

    def attach_master(self, master) -> None:
        self.master = master

    def get_available_workers(self) -> list:
        with self.lock:
            return list(self.free)

    def reserve_worker(self, worker) -> None:
        with self.lock:
            if worker in self.free:
                self.free.remove(worker)

    def worker_finished(self, worker) -> None:
        with self.lock:
            if worker in self.slots and worker not in self.free:
                self.free.append(worker)

    def execute_task(self, task, worker) -> None:
        if worker is None:
            raise InterfaceError("Procs runs tasks on its own workers only")
        worker.task = task
        try:
            self.write(worker, wire.encode(self.message(task)))
        except OSError as exc:
            worker.task = None
            task.worker_lost(f"{worker} is gone: {exc}", started=False)

    def stop_task(self, task, worker) -> None:
        if worker is not None and worker.task is task:
            worker.proc.kill()

    def get_status(self) -> dict:
        with self.lock:
            return {"slots": len(self.slots), "free": len(self.free)}

    def cleanup(self) -> None:
        with self.lock:
            self.closed = True
            slots = list(self.slots)
        for slot in slots:
            slot.proc.kill()
        for slot in slots:
            slot.proc.wait()
            shutil.rmtree(slot.scratch, ignore_errors=True)


# -- one broken rule each -----------------------------------------------------------------


class Truncating(Procs):
    """payloads: one unchecked write, at most 64 KiB: big arguments arrive cut."""

    def write(self, slot, data):
        os.write(slot.proc.stdin.fileno(), data[:65536])


class Flattened(Procs):
    """exceptions: a task's exception reaches the master as a RuntimeError."""

    def finish(self, task, reply):
        if not reply[2]:
            task.task_finished(RuntimeError("the task failed"))
        else:
            deliver(task, reply)


class Swapped(Procs):
    """output: stdout and stderr swapped."""

    def finish(self, task, reply):
        kind, attempt, ok, blob, out, err, seconds = reply
        deliver(task, (kind, attempt, ok, blob, err, out, seconds))


class NoFiles(Procs):
    """data_files: the data files are never sent."""

    def message(self, task):
        kind, attempt, code, args, extras = task.payload.message(task.id)
        return kind, attempt, code, args, dict(extras or {}, files=[])


class OriginalFiles(Procs):
    """data_files_read_at_submit: the worker is sent the user's paths, not the master's
    snapshot taken at submit, so it reads a file as it is now (or not at all)."""

    def message(self, task):
        kind, attempt, code, args, extras = task.payload.message(task.id)
        files = [(os.path.basename(p), os.path.abspath(p)) for p in task.data_files]
        return kind, attempt, code, args, dict(extras or {}, files=files)


class Mojibake(Procs):
    """scripts_in_any_encoding: the script's text re-read as latin-1 from its UTF-8 bytes."""

    def message(self, task):
        kind, attempt, code, args, extras = task.payload.message(task.id)
        if code[0] == "s" and isinstance(code[2], str):
            code = ("s", code[1], code[2].encode("utf-8").decode("latin-1"))
        return kind, attempt, code, args, extras


class NoModules(Procs):
    """modules: the modules given in modules= are never sent."""

    def message(self, task):
        kind, attempt, code, args, extras = task.payload.message(task.id)
        return kind, attempt, code, args, dict(extras or {}, modules=[])


class FunctionsOnly(Procs):
    """scripts: refuses PyMW 0.x scripts."""

    def execute_task(self, task, worker):
        if task.payload.code[0] == "s":
            raise InterfaceError("scripts are not supported")
        super().execute_task(task, worker)


class LostAsError(Procs):
    """lost_worker: a lost worker reported as the task's own error (never retried)."""

    def lost(self, task, reason):
        task.task_finished(RuntimeError(reason))


class NoStop(Procs):
    """timeout: stop_task does nothing, so a timed-out task runs on."""

    def stop_task(self, task, worker):
        pass


class StopsAll(Procs):
    """cancel: stop_task kills every worker, the neighbour's too."""

    def stop_task(self, task, worker):
        for slot in list(self.slots):
            slot.proc.kill()


class NoSlotBack(Procs):
    """slots: a replacement process never joins the free list: a stopped task's slot is gone."""

    def ready(self, slot):
        if slot.index not in self.started_once:
            super().ready(slot)


class NoneSlot(Procs):
    """failing_hooks: worker_finished(None), after a failed get_available_workers round,
    taken for a slot."""

    def worker_finished(self, worker):
        with self.lock:
            if worker not in self.free:
                self.free.append(worker)


class Hangs(Procs):
    """every check: execute_task takes the task and never sends it: nothing ever ends."""

    def execute_task(self, task, worker):
        worker.task = task


class HangingStop(Procs):
    """cancel: stop_task never returns."""

    def stop_task(self, task, worker):
        threading.Event().wait()


class Inline:
    """A correct in-process interface: the real runtime, on the dispatch thread."""

    def __init__(self):
        self.runtime = Runtime(chdir=False)

    def execute_task(self, task, worker):
        deliver(task, self.runtime.run(task.payload.message(task.id)))

    def cleanup(self):
        self.runtime.close()


class Twice(Inline):
    """results: the same attempt reported twice."""

    def execute_task(self, task, worker):
        reply = self.runtime.run(task.payload.message(task.id))
        deliver(task, reply)
        deliver(task, reply)


class Clash(Inline):
    """status: a status key the master owns."""

    def get_status(self):
        return {"running": "mine"}


class TooMany(LocalInterface):
    """concurrency: declared 1 by its test, runs 2 (every process up before the first task,
    so the two tasks run at once whatever the machine's load)."""

    def __init__(self, **options):
        super().__init__(**options)
        for process in list(self._processes):
            process.connection.wait_ready(timeout=60)


class Leaky(LocalInterface):
    """cleanup: a file left in TMPDIR after cleanup()."""

    def cleanup(self):
        super().cleanup()
        tempfile.mkstemp(prefix="leaked-")
