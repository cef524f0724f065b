"""The tasks the contract kit submits.

Never imported by name: the kit loads this file as a module that is not in
``sys.modules`` (see ``_load_tasks``), so cloudpickle ships these functions by value
and a worker needs nothing of PyMW beyond the runtime (an uploaded zip will do).
Standard library only; everything a task needs is imported inside it.
"""

from __future__ import annotations


class ContractError(LookupError):
    """A task's own exception: its type must reach ``get_result`` unchanged."""


def square(x):
    return x * x


def echo(*args, **kwargs):
    return args, kwargs


def blob(seed, size):
    """``size`` bytes that only this seed gives: a big result the kit can rebuild to compare."""
    import random

    return random.Random(seed).randbytes(size)


def digest(data):
    """What a big argument looked like on arrival: its length and its SHA-256."""
    import hashlib

    return len(data), hashlib.sha256(data).hexdigest()


def nested(seed, size):
    """About ``size`` bytes as nested objects: dicts, lists, tuples, text, bytes, numbers."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(max(1, size // 4096)):
        rows.append({
            "i": i,
            "text": f"row {i} \u00e9\u2713 " * 40,
            "raw": rng.randbytes(3000),
            "deep": [[i, (i * 0.5, str(i))], {"none": None, "flag": i % 2 == 0}],
        })
    return {"seed": seed, "rows": rows}


def fail(message):
    raise ContractError(message)


def chatter(word):
    import sys

    print(f"out:{word}")
    print(f"err:{word}", file=sys.stderr)
    return word


def read_data(name):
    with open(name, encoding="utf-8") as fh:
        return fh.read()


def shipped_value(module_name):
    import importlib

    return importlib.import_module(module_name).VALUE


def pid():
    import os

    return os.getpid()


def kill_own_process():
    """A worker killed mid-task: SIGKILL leaves the worker no chance to say anything."""
    import os
    import signal
    import time

    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)


def _mark(folder, name, text):
    import os

    part = os.path.join(folder, f".{name}.part")
    with open(part, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(part, 0o666)
    os.replace(part, os.path.join(folder, name))


def hold(folder, label, seconds):
    """Say where it runs (``label.pid``), then sleep: a task to stop, cancel or abandon."""
    import os
    import time

    _mark(folder, f"{label}.pid", str(os.getpid()))
    time.sleep(seconds)
    return label


def gate(folder, label, wait):
    """Say where it runs (``label.pid``), then wait until ``folder/gate.open`` exists (or
    ``wait`` s passed): a task that keeps its slot busy until the check lets it go."""
    import os
    import time

    _mark(folder, f"{label}.pid", str(os.getpid()))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and not os.path.exists(os.path.join(folder, "gate.open")):
        time.sleep(0.01)
    return label


def rendezvous(folder, label, count, wait, linger):
    """Start, then wait until ``count`` tasks have started (or ``wait`` s passed).

    Returns (whether ``count`` tasks were seen started, the most tasks seen running at
    once). Lingers ``linger`` s after the meeting so that one task too many would show.
    """
    import os
    import time

    def names(suffix):
        return [n for n in os.listdir(folder) if n.endswith(suffix)]

    _mark(folder, f"{label}.started", "")
    _mark(folder, f"{label}.running", "")
    most = 0
    met = False
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline:
            most = max(most, len(names(".running")))
            if len(names(".started")) >= count:
                met = True
                break
            time.sleep(0.02)
        end = time.monotonic() + (linger if met else 0)
        while time.monotonic() < end:
            most = max(most, len(names(".running")))
            time.sleep(0.02)
    finally:
        os.remove(os.path.join(folder, f"{label}.running"))
    return met, most


SCRIPT = """\
# A PyMW 0.x worker script: input from pymw_get_input(), output through pymw_return_output().
numbers = pymw_get_input()
print("script ran")
pymw_return_output(sum(numbers))
"""

MODULE = """\
# Shipped by value with modules=: the worker has no file of this name.
VALUE = {value!r}
"""

LATIN1_SCRIPT = """\
# -*- coding: latin-1 -*-
# A PyMW 0.x-era script saved in latin-1 (written to disk in that encoding): \u00e9t\u00e9.
word = pymw_get_input()
pymw_return_output(word + "\u00e9")
"""
