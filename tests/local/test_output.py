"""A task's output as a terminal shows it (issue 20): fds 1 and 2, whatever writes
them, in order; a size cap with a visible mark; bytes that are not UTF-8; and the
worker's channel to the master untouched by anything a task writes.

Seen failing on the code before fd-level capture (commit 50d3ddd):
`sys.stdout.buffer` raised AttributeError (output went to an io.StringIO), and the
os.write / child / C lines were missing from task.stdout (they went to the worker's
stderr); there was no cap (a 9 MiB output came back whole, with no mark).
"""

from __future__ import annotations

import os

from pymw_testing import WRITTEN_STDERR, WRITTEN_STDOUT, write_every_way

from pymw_core import Master
from pymw_core.capture import CAP


def test_everything_written_to_fds_1_and_2_reaches_the_task_in_order():
    with Master("local", num_workers=1) as m:
        for _ in range(2):  # and again on the same worker: nothing is left over
            task = m.submit_task(write_every_way)
            assert m.get_result(task)[1] == "written"
            assert task.stdout == WRITTEN_STDOUT
            assert task.stderr == WRITTEN_STDERR


def write_bytes(data):
    import sys

    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def test_bytes_that_are_not_utf8_arrive_replaced():
    with Master("local", num_workers=1) as m:
        task = m.submit_task(write_bytes, (b"caf\xe9 \xff ok\n",))
        m.get_result(task)
        assert task.stdout == "caf\ufffd \ufffd ok\n"


def write_a_lot(size):
    import os

    head, tail = b"HEAD" + b"h" * 1020, b"t" * 1020 + b"TAIL"
    os.write(1, head)
    block = b"m" * (1 << 20)
    left = size - len(head) - len(tail)
    while left > 0:
        left -= os.write(1, block[:left])
    os.write(1, tail)


def test_output_past_the_cap_is_cut_in_the_middle_with_a_mark():
    size = CAP + (1 << 20)
    with Master("local", num_workers=1) as m:
        task = m.submit_task(write_a_lot, (size,))
        m.get_result(task)
        out = task.stdout
        assert out.startswith("HEAD") and out.endswith("TAIL")
        assert f"[pymw: {size - CAP} bytes of output cut here" in out
        # The next task on that worker starts from nothing.
        quiet = m.submit_task(write_bytes, (b"small\n",))
        m.get_result(quiet)
        assert quiet.stdout == "small\n"


def scribble_on_every_descriptor():
    """Frames-looking garbage on fds 1 and 2, and on sys.__stdout__ / __stderr__."""
    import sys

    for fd in (1, 2):
        os.write(fd, b"\x00\x00\x00\x10garbage that looks like a frame")
    for stream in (sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.write("more garbage\n")
            stream.flush()
    return os.getpid()


def test_nothing_a_task_writes_reaches_the_workers_channel():
    with Master("local", num_workers=1) as m:
        first = m.get_result(m.submit_task(scribble_on_every_descriptor))[1]
        second = m.get_result(m.submit_task(os.getpid))[1]
        assert first == second and m.get_status()["restarts"] == 0
