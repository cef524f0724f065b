"""Promises of docs/interfaces/local.md, docs/failures.md and docs/observers.md, on real
worker processes: each test names the sentence it holds the product to."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest
from pymw_testing import clean_env, wait_until

from pymw_core import Master, TaskError, WorkerLostError


def die_once_then_log(marker, log, name):
    """The first run kills its worker process; every run appends ``name`` to ``log``."""
    import os

    with open(log, "a") as fh:
        fh.write(name + "\n")
    if name == "first" and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(9)
    return name


def interrupt():
    raise KeyboardInterrupt


def crash():
    import ctypes

    ctypes.string_at(0)  # SIGSEGV: faulthandler writes the worker's crash report


def wrapper(tmp_path, name):
    """An interpreter named ``name`` in ``tmp_path`` that marks the workers it starts."""
    path = tmp_path / name
    path.write_text(f'#!/bin/sh\nPYMW_TEST_WRAPPED={name} exec {sys.executable} "$@"\n')
    path.chmod(0o755)
    return path


def wrapped():
    import os

    return os.environ.get("PYMW_TEST_WRAPPED")


def test_a_lost_workers_task_goes_back_to_the_front_of_the_queue(tmp_path):
    # failures.md: "the task goes back to the front of the queue and runs again".
    # Seen failing with the retry appended to the queue's end: first, a, b, first.
    log = tmp_path / "ran"
    with Master("local", num_workers=1, prefetch=0) as m:
        tasks = [m.submit_task(die_once_then_log, (str(tmp_path / "died"), str(log), name))
                 for name in ("first", "a", "b")]
        assert [m.get_result(t)[1] for t in tasks] == ["first", "a", "b"]
    assert log.read_text().split() == ["first", "first", "a", "b"]
    assert tasks[0].attempts == 2


def test_a_task_raising_keyboardinterrupt_fails_as_a_task_error_and_the_worker_stays():
    # failures.md: "A task that raises SystemExit or KeyboardInterrupt ... fails with a
    # TaskError": the master and the worker process go on. (A runtime catching only
    # Exception lets it end the worker: the pids then differ.)
    with Master("local", num_workers=1) as m:
        pids = m.get_status()["pids"]
        with pytest.raises(TaskError, match="KeyboardInterrupt"):
            m.get_result(m.submit_task(interrupt))
        assert m.get_result(m.submit_task(abs, (-2,)))[1] == 2
        assert m.get_status()["pids"] == pids, "the worker process was replaced"


def test_num_workers_defaults_to_the_cpus_this_process_may_run_on(tmp_path):
    # local.md: "the CPU count (the CPUs this process may run on)": one CPU allowed, one
    # worker, on any machine. Seen failing with os.cpu_count() as the default: ['2'].
    program = textwrap.dedent("""
        import os
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        from pymw_core import Master
        with Master("local") as m:
            print(m.get_status()["workers"])
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=120, env=clean_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]
    with Master("local") as m:
        assert m.get_status()["workers"] == len(os.sched_getaffinity(0))


def test_a_worker_process_crash_report_reaches_the_masters_stderr(capsys):
    # local.md: "What a worker process itself writes to its stderr outside a task (a
    # crash report, for example) is passed through to the master's stderr."
    # Seen failing with the pass-through removed (_drain_stderr writing nothing).
    with Master("local", num_workers=1, max_attempts=1) as m:
        with pytest.raises(WorkerLostError):
            m.get_result(m.submit_task(crash))
        seen: list[str] = []
        wait_until(lambda: seen.append(capsys.readouterr().err) or "Fatal Python error"
                   in "".join(seen), 10, "the worker's crash report on the master's stderr")


def test_python_may_be_a_name_found_on_path(tmp_path, monkeypatch):
    # local.md: "python: ... a path (or a name found on PATH)". (Made absolute against
    # the cwd, the name finds no interpreter and the workers cannot start.)
    wrapper(tmp_path, "pymw-test-python")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with Master("local", num_workers=1, python="pymw-test-python") as m:
        assert m.get_result(m.submit_task(wrapped))[1] == "pymw-test-python"


def test_the_log_observer_reports_workers_and_retries_with_their_fields(tmp_path, caplog):
    # observers.md: worker up (INFO) and lost (WARNING), retried (WARNING), with
    # pymw_event, worker, task_id, attempt and reason in each record's extra.
    caplog.set_level(logging.DEBUG, logger="pymw.tasks")
    log = tmp_path / "ran"
    with Master("local", num_workers=1, observers=["log"]) as m:
        task = m.submit_task(die_once_then_log, (str(tmp_path / "died"), str(log), "first"))
        m.get_result(task)
        wait_until(lambda: len([r for r in caplog.records
                                if getattr(r, "pymw_event", "") == "worker_up"]) >= 2, 10,
                   "the replacement worker's worker_up record")
    records = {}
    for r in caplog.records:
        if r.name == "pymw.tasks":
            records.setdefault(r.pymw_event, []).append(r)
    up = records["worker_up"][0]
    assert up.levelno == logging.INFO and up.worker.startswith("<local worker")
    (lost,) = records["worker_lost"]
    assert lost.levelno == logging.WARNING and lost.worker == up.worker
    assert "exited with status 9" in lost.reason
    (retried,) = records["retried"]
    assert retried.levelno == logging.WARNING
    assert retried.task_id == task.id and retried.attempt in (1, 2)
    assert "exited with status 9" in retried.reason
