"""Packing at submit time: bad input fails early and clearly; code ships as DESIGN.md says."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from pymw_testing import Inline

from pymw_core import Master, TaskError
from pymw_core.payload import Packer


def add(a, b):
    return a + b


@pytest.fixture
def master():
    with Master(Inline()) as m:
        yield m


def test_not_callable_and_not_a_script(master):
    with pytest.raises(TaskError, match="callable or the path of a Python script, not int"):
        master.submit_task(42)


def test_missing_script(master, tmp_path):
    with pytest.raises(TaskError, match="not an existing script file"):
        master.submit_task(str(tmp_path / "nope.py"))


def test_script_with_a_syntax_error(master, tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("def (:\n")
    with pytest.raises(TaskError, match="not valid Python"):
        master.submit_task(str(script))


def test_unpicklable_arguments(master):
    with pytest.raises(TaskError, match="input_data cannot be pickled"):
        master.submit_task(add, (threading.Lock(), 1))


def test_input_data_must_be_a_tuple_for_functions(master):
    with pytest.raises(TaskError, match=r"write \(5,\) for one argument"):
        master.submit_task(abs, 5)


def test_missing_data_file(master, tmp_path):
    with pytest.raises(TaskError, match="data file .*missing.txt.* does not exist"):
        master.submit_task(add, (1, 2), data_files=[str(tmp_path / "missing.txt")])


def test_duplicate_data_file_names(master, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in "ab":
        (tmp_path / d / "same.txt").write_text(d)
    with pytest.raises(TaskError, match="two data files are named 'same.txt'"):
        master.submit_task(add, (1, 2), data_files=[tmp_path / "a/same.txt", tmp_path / "b/same.txt"])


def test_unknown_module_in_modules(master):
    with pytest.raises(TaskError, match="module 'no_such_module_xyz' in modules= cannot be imported"):
        master.submit_task(add, (1, 2), modules=["no_such_module_xyz"])


def test_bad_dep_funcs(master):
    with pytest.raises(TaskError, match="dep_funcs must hold named functions"):
        master.submit_task(add, (1, 2), dep_funcs=[42])


def test_unpicklable_function(master):
    lock = threading.Lock()

    def uses_lock():
        return lock.locked()

    with pytest.raises(TaskError, match="cannot be pickled"):
        master.submit_task(uses_lock)


def test_a_function_is_pickled_once_per_function_object():
    packer = Packer()
    first = packer.pack(add, (1, 2))
    second = packer.pack(add, (3, 4))
    assert first.code is second.code
    other = packer.pack(lambda: 1, None)
    assert other.code[1] != first.code[1]


def test_module_values_are_captured_at_first_submit(master):
    box = {"k": 1}

    def read_box():
        return box["k"]

    first = master.submit_task(read_box)
    box["k"] = 2  # a worker process would have seen the value at the first pickling
    second = master.submit_task(read_box)
    assert master.get_result(first)[1] == 1
    assert master.get_result(second)[1] == 1


def test_pymw_0x_script_runs_unchanged(master, tmp_path):
    (tmp_path / "helper_mod_for_script.py").write_text("def triple(x):\n    return 3 * x\n")
    script = tmp_path / "worker_script.py"
    script.write_text(textwrap.dedent("""
        from pymw_app import *
        import helper_mod_for_script
        data = pymw_get_input()
        print("got", data)
        pymw_return_output([helper_mod_for_script.triple(v) for v in data])
    """))
    task = master.submit_task(str(script), [1, 2, 3])
    assert master.get_result(task)[1] == [3, 6, 9]
    assert task.stdout == "got [1, 2, 3]\n"


def test_script_globals_and_dep_funcs(master, tmp_path):
    def double(x):
        return 2 * x

    script = tmp_path / "uses_dep.py"
    script.write_text("pymw_return_output(double(pymw_get_input()))\n")
    task = master.submit_task(str(script), 21, dep_funcs=[double])
    assert master.get_result(task)[1] == 42


def test_script_exit_status(master, tmp_path):
    script = tmp_path / "exits.py"
    script.write_text("import sys\npymw_return_output('partial')\nsys.exit(pymw_get_input())\n")
    assert master.get_result(master.submit_task(str(script), 0))[1] == "partial"
    with pytest.raises(TaskError, match=r"the task raised SystemExit\(3,\)"):
        master.get_result(master.submit_task(str(script), 3))


def test_modules_are_shipped_by_source(master, tmp_path, monkeypatch):
    (tmp_path / "shipped_helper_xyz.py").write_text("VALUE = 41\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def use_helper():
        import shipped_helper_xyz

        return shipped_helper_xyz.VALUE + 1

    task = master.submit_task(use_helper, modules=["shipped_helper_xyz"])
    assert master.get_result(task)[1] == 42
    sys.modules.pop("shipped_helper_xyz", None)


def test_user_code_is_recognised():
    packer = Packer()
    names = packer.user_code.names()
    assert names[0] == "__main__"
    assert "pymw_testing" in names  # the tests' own helper module: nobody installed it
    for installed in ("pluggy", "cloudpickle", "pymw_core", "os", "pytest"):
        assert installed not in names


# -- data files are read at submit, scripts as Python reads them ------------------------------


def test_a_data_file_is_snapshotted_once_per_version(tmp_path, monkeypatch):
    # Seen failing with the not-yet-trusted snapshot ignored (20 copies of one file)
    # and, before snapshots, with the task reading the rewritten file.
    from pymw_core.staging import Snapshots

    data = tmp_path / "big.dat"
    data.write_bytes(b"x" * 100_000)
    copies = []
    real_read = Snapshots._read
    monkeypatch.setattr(Snapshots, "_read", lambda self, path, name, before, known: (
        copies.append(path) if known is None else None,
        real_read(self, path, name, before, known))[1])
    packer = Packer()
    try:
        # Just written (its mtime is now): the first submits hash it again (not copy
        # it) until it is old enough to trust; then not even that.
        packer.pack(len, ((),))  # the first pack is slow (it looks at sys.modules)
        now = time.time_ns()
        os.utime(data, ns=(now, now))
        paths = {packer.pack(len, ((),), data_files=[str(data)]).data_files[0][1]
                 for _ in range(1000)}
        assert len(paths) == 1 and len(copies) == 1
        old = time.time() - 60
        os.utime(data, (old, old))  # a new version (its times changed), same bytes
        paths |= {packer.pack(len, ((),), data_files=[str(data)]).data_files[0][1]
                  for _ in range(1000)}
        assert len(paths) == 1 and len(copies) == 2  # read once more, the same snapshot
        (snapshot,) = paths
        assert snapshot != str(data) and os.path.basename(snapshot) == "big.dat"
        data.write_bytes(b"y" * 100_000)  # same size; its mtime moves on
        newer = packer.pack(len, ((),), data_files=[str(data)]).data_files[0][1]
        assert newer != snapshot and Path(newer).read_bytes()[:1] == b"y"
        assert Path(snapshot).read_bytes()[:1] == b"x"  # the first tasks keep what they had
    finally:
        packer.close()
    assert not os.path.exists(snapshot), "close() must remove the snapshots"


def test_a_file_rewritten_within_the_same_clock_tick_is_read_again(tmp_path):
    # Same size, same mtime (set back by hand, as a coarse clock or a tool would leave
    # it). Seen failing with a version key of (path, size, mtime) and no racy rule.
    data = tmp_path / "v.txt"
    packer = Packer()
    try:
        data.write_text("v1")
        stamp = os.stat(data).st_mtime_ns
        first = packer.pack(len, ((),), data_files=[str(data)]).data_files[0][1]
        data.write_text("v2")
        os.utime(data, ns=(stamp, stamp))
        second = packer.pack(len, ((),), data_files=[str(data)]).data_files[0][1]
        assert Path(first).read_text() == "v1" and Path(second).read_text() == "v2"
    finally:
        packer.close()


def test_a_script_with_a_coding_line_is_read_in_its_encoding(tmp_path):
    # Seen failing on the old code: UnicodeDecodeError at submit.
    script = tmp_path / "old.py"
    script.write_bytes("# -*- coding: latin-1 -*-\nword = 'caf\u00e9'\n".encode("latin-1"))
    code = Packer().pack(str(script), None).code
    assert code[0] == "s" and "caf\u00e9" in code[2]
    broken = tmp_path / "broken.py"
    broken.write_bytes(b"x = '\xe9'\n")  # no coding line: must be UTF-8, and is not
    with pytest.raises(TaskError, match="cannot be decoded as Python source"):
        Packer().pack(str(broken), None)
