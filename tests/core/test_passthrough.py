"""pymw_core.passthrough: a child's own output reaches this process's stderr, its last
lines are kept, and a broken stderr never stops the pipe from being read."""

from __future__ import annotations

import collections
import io
import os
import sys

from pymw_core.passthrough import pass_through


def piped(data: bytes):
    """A pipe's reading end holding ``data``, its writer closed (the child has ended)."""
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    return os.fdopen(read, "rb")


def test_lines_go_to_stderr_as_they_are_and_the_last_ones_are_kept(capsys):
    """Seen failing with a strict decode: UnicodeDecodeError at the second line."""
    tail = collections.deque(maxlen=2)
    with piped(b"one\ntw\xffo\nthree") as stream:
        pass_through(stream, tail)
    assert capsys.readouterr().err == "one\ntw\ufffdo\nthree"
    assert list(tail) == ["tw\ufffdo\n", "three"]


def test_a_closed_stderr_loses_the_lines_not_the_reading(monkeypatch):
    """Seen failing with the try/except around the write removed: ValueError (I/O
    operation on closed file) at the first line, the rest of the pipe never read."""
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    tail = collections.deque(maxlen=10)
    with piped(b"a\nb\nc\n") as stream:
        pass_through(stream, tail)
        assert stream.read() == b""
    assert list(tail) == ["a\n", "b\n", "c\n"]
