"""What a 0.4 program needs on the worker side: modules= by name, both generations of
worker scripts, and a choice of interpreter (``python_loc``, the local interface's
``python``)."""

from __future__ import annotations

import importlib.util
import pickle
import sys

import pytest
from pymw_testing import require

from pymw_core import Master, TaskError
from pymw_core.compat import interfaces, pymw
from pymw_core.payload import Packer

# A function whose module imports nothing: only modules= can give it `math` and `json`.
_NAMESPACE: dict = {}
exec(  # builds the function the test needs, with empty globals
    "def floors(x):\n    return math.floor(x), json.dumps([x])\n", _NAMESPACE)
floors = _NAMESPACE["floors"]


def add(a, b):
    return a + b


@pytest.fixture
def master():
    m = pymw.PyMW_Master(interfaces.generic.GenericInterface(num_workers=1))
    yield m
    m.close()


# -- modules= ----------------------------------------------------------------------------


def test_modules_without_source_go_by_name(master):
    import math

    assert not math.__file__.endswith(".py") or "math" in sys.builtin_module_names
    task = master.submit_task(floors, input_data=(2.5,), modules=("math", "sys", "json"))
    assert master.get_result(task)[1] == (2, "[2.5]")


def test_modules_given_as_module_objects(master):
    import math

    task = master.submit_task(floors, input_data=(1.5,), modules=(math, "json"))
    assert master.get_result(task)[1] == (1, "[1.5]")


def test_how_each_kind_of_module_travels(tmp_path, monkeypatch):
    (tmp_path / "own_helper_mod.py").write_text("VALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    payload = Packer().pack(add, (1, 2), modules=("math", "sys", "random", "own_helper_mod"))
    assert payload.extras["imports"] == ["math", "sys", "random", "own_helper_mod"]
    assert [name for name, _, _ in payload.extras["modules"]] == ["own_helper_mod"]


def test_own_module_travels_by_value_and_is_bound(master, tmp_path, monkeypatch):
    (tmp_path / "own_bound_mod.py").write_text("VALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict = {}
    exec("def seven():\n    return own_bound_mod.VALUE\n", namespace)
    task = master.submit_task(namespace["seven"], modules=("own_bound_mod",))
    assert master.get_result(task)[1] == 7


def test_installed_package_with_extension_modules_goes_by_name():
    require(importlib.util.find_spec("mpi4py") is not None, "mpi4py is not installed")
    payload = Packer().pack(add, (1, 2), modules=("mpi4py",))
    assert payload.extras["imports"] == ["mpi4py"]
    assert "modules" not in payload.extras


def test_a_module_the_master_cannot_import_fails_at_submit(master):
    with pytest.raises(TaskError, match="'no_such_module_xyz' in modules= cannot be imported"):
        master.submit_task(add, (1, 2), modules=("no_such_module_xyz",))


# -- worker scripts of both generations ---------------------------------------------------

OLD_STYLE = """\
from pymw_app import *
value = pymw_get_input()
print("got", value)
pymw_set_progress(0.5)
pymw_return_output(value * 2)
"""

ARGV_STYLE = """\
import pickle, sys
with open(sys.argv[1], "rb") as fh:
    value = pickle.load(fh)
print("printed directly")
with open(sys.argv[2], "wb") as fh:
    pickle.dump([value * 3, "its own stdout", "its own stderr"], fh)
"""


@pytest.mark.parametrize("make", [
    lambda: pymw.PyMW_Master(interfaces.generic.GenericInterface(num_workers=1)),
    lambda: Master("local", num_workers=1),
], ids=["compat", "native"])
def test_both_script_conventions_run(tmp_path, make):
    old = tmp_path / "old_style.py"
    old.write_text(OLD_STYLE)
    argv = tmp_path / "argv_style.py"
    argv.write_text(ARGV_STYLE)
    master = make()
    try:
        task = master.submit_task(str(old), input_data=21)
        assert master.get_result(task)[1] == 42
        assert task.stdout == "got 21\n"
        task = master.submit_task(str(argv), input_data=[1])
        assert master.get_result(task)[1] == [1, 1, 1]
        assert task.stdout == "printed directly\nits own stdout"
        assert task.stderr == "its own stderr"
    finally:
        master.close()


LATIN1_ARGV_STYLE = """\
# -*- coding: latin-1 -*-
import pickle, sys
with open(sys.argv[1], "rb") as fh:
    word = pickle.load(fh)
with open(sys.argv[2], "wb") as fh:
    pickle.dump([word + "\u00e9", "caf\u00e9\\n", ""], fh)
"""


def test_a_04_script_saved_in_latin1_runs(master, tmp_path):
    # Seen failing on the old code: UnicodeDecodeError (compat: the task failed with a
    # TaskError saying the script cannot be read).
    script = tmp_path / "latin1_style.py"
    script.write_bytes(LATIN1_ARGV_STYLE.encode("latin-1"))
    task = master.submit_task(str(script), input_data="caf")
    assert master.get_result(task)[1] == "caf\u00e9"
    assert "caf\u00e9" in task.stdout


def test_argv_script_that_writes_nothing_says_so(master, tmp_path):
    script = tmp_path / "silent.py"
    script.write_text("import sys\nprint(sys.argv[1])\n")
    task = master.submit_task(str(script), input_data=1)
    with pytest.raises(TaskError, match=r"wrote no result: .*sys.argv\[2\]"):
        master.get_result(task)


def test_argv_script_that_writes_the_wrong_shape_says_so(master, tmp_path):
    script = tmp_path / "odd.py"
    script.write_text("import pickle, sys\npickle.dump(5, open(sys.argv[2], 'wb'))\n")
    task = master.submit_task(str(script), input_data=1)
    with pytest.raises(TaskError, match=r"wrote int into sys.argv\[2\], not \[result, stdout"):
        master.get_result(task)


def test_a_script_that_only_looks_at_argv_runs_as_before(master, tmp_path):
    script = tmp_path / "plain.py"
    script.write_text("import sys\nprint(len(sys.argv))\n")
    task = master.submit_task(str(script), input_data=1)
    assert master.get_result(task)[1] is None
    assert task.stdout == "1\n"


def test_argv_input_is_a_plain_pickle(master, tmp_path):
    script = tmp_path / "echo.py"
    script.write_text("import pickle, sys\n"
                      "data = open(sys.argv[1], 'rb').read()\n"
                      "pickle.dump([data, '', ''], open(sys.argv[2], 'wb'))\n")
    task = master.submit_task(str(script), input_data={"a": 1})
    assert pickle.loads(master.get_result(task)[1]) == {"a": 1}


# -- the worker interpreter ----------------------------------------------------------------


def test_python_loc_that_does_not_exist_fails_the_tasks():
    interface = interfaces.generic.GenericInterface(python_loc="/usr/local/dead_parrot/python")
    master = pymw.PyMW_Master(interface)
    try:
        task = master.submit_task(add, input_data=(1, 2))
        with pytest.raises(pymw.InterfaceException,
                           match="'/usr/local/dead_parrot/python' cannot be started"):
            master.get_result(task)
        assert task._task_state == "error"
    finally:
        master.close()


def test_python_that_dies_at_start_is_named(tmp_path):
    fake = tmp_path / "fakepython"
    fake.write_text("#!/bin/sh\necho 'not a python' >&2\nexit 3\n")
    fake.chmod(0o755)
    with Master("local", num_workers=1, python=str(fake)) as master:
        task = master.submit_task(add, (1, 2))
        with pytest.raises(pymw.InterfaceException,
                           match=rf"processes \({fake}\) die as they start .*status 3"):
            master.get_result(task)


def test_python_option_runs_the_workers(tmp_path):
    # Not sys.executable (the default anyway): a wrapper that marks the workers it starts.
    # Seen failing with the option ignored (python=None): the mark was missing.
    wrapper = tmp_path / "wrapped-python"
    wrapper.write_text(f"#!/bin/sh\nPYMW_TEST_WRAPPED=yes exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)

    def started_by():
        import os
        import sys

        return os.environ.get("PYMW_TEST_WRAPPED"), sys.executable

    with Master("local", num_workers=1, python=str(wrapper)) as master:
        assert master.get_result(master.submit_task(started_by))[1] == ("yes", sys.executable)


def test_python_option_must_be_a_path():
    with pytest.raises(pymw.InterfaceException, match="python must be the path"):
        Master("local", num_workers=1, python=3)
