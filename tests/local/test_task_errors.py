"""Whatever a task raises arrives as its own exception or a TaskError naming it (issue
20), never retried; and a traceback through a function shipped by value shows its
source lines, even where the worker cannot read the file.

Seen failing on the code before (commit 50d3ddd): the exception whose __reduce__ and
__str__ both raise crashed the worker (its stand-in's message called str()), so the
task came back as WorkerLostError after 3 attempts; the unloadable exception came back
as "could not be unpickled on the master" without its type's message; the traceback
showed `File "<dynamic-code>", line N` and no source line.
"""

from __future__ import annotations

import importlib
import sys

import pytest

from pymw_core import Master, TaskError


class Unprintable(Exception):
    """Neither pickled nor printed: both raise."""

    def __reduce__(self):
        raise RuntimeError("no pickling me")

    def __str__(self):
        raise RuntimeError("no printing me")


def raise_unprintable():
    raise Unprintable()


def test_an_exception_that_can_be_neither_pickled_nor_printed_is_a_task_error():
    with Master("local", num_workers=1) as m:
        task = m.submit_task(raise_unprintable)
        with pytest.raises(TaskError) as info:
            m.get_result(task)
        text = str(info.value)
        assert "Unprintable" in text and "str() of the object failed" in text, text
        assert "no pickling me" in text, text
        assert "raise Unprintable()" in info.value.__cause__.tb  # the traceback came too
        assert task.attempts == 1 and m.get_status()["restarts"] == 0


class NeedsTwo(Exception):
    """Pickles, but cannot be unpickled: its __init__ takes two arguments, args has one."""

    def __init__(self, a, b):
        super().__init__(f"{a} and {b}")


def raise_needs_two():
    raise NeedsTwo("this", "that")


def test_an_exception_that_cannot_be_unpickled_arrives_with_its_type_and_message():
    with Master("local", num_workers=1) as m:
        task = m.submit_task(raise_needs_two)
        with pytest.raises(TaskError, match="NeedsTwo: this and that"):
            m.get_result(task)
        assert task.attempts == 1


_MODULE = '''
def divide(a, b):
    quotient = a / b  # the line a traceback must show
    return quotient
'''


def test_a_shipped_functions_traceback_shows_its_source_lines(tmp_path, monkeypatch):
    """The function's module is the user's (shipped by value) and its file is gone by
    the time the worker runs it: the lines travel with the function."""
    (tmp_path / "gone_module.py").write_text(_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("gone_module")
    try:
        with Master("local", num_workers=1) as m:
            task = m.submit_task(module.divide, (1, 0))
            (tmp_path / "gone_module.py").unlink()
            with pytest.raises(ZeroDivisionError) as info:
                m.get_result(task)
    finally:
        sys.modules.pop("gone_module", None)
    tb = info.value.__cause__.tb
    assert f'File "{tmp_path / "gone_module.py"}", line 3, in divide' in tb, tb
    assert "quotient = a / b  # the line a traceback must show" in tb, tb
