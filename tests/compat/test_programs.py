"""PyMW 0.4 programs, ported by changing their import lines only (docs/coming-from-0.4.md).

Written the way 0.4's own test_cases.py and examples are: ``from pymw import *`` and
``from pymw import interfaces`` become ``from pymw_core.compat import ...``, then
``pymw.PyMW_Master(...)``, ``interfaces.generic.GenericInterface(...)`` and so on.
"""

from __future__ import annotations

import os
import sys
import time
from optparse import OptionParser

import pytest
from pymw_testing import wait_until

from pymw_core.compat import *  # noqa: F403 - the porting rule: 0.4's `from pymw import *`
from pymw_core.compat import interfaces


def null_worker(in_data):
    return in_data


def err_worker():
    return 0 / 0


def print_worker():
    sys.stdout.write("stdout test")
    sys.stderr.write("stderr test")


def square(list1):
    return [x * x for x in list1]


def plus(list2):
    return sum(list2)


def halfway(gate):
    """Reports half its work done, then waits (at most 60 s) for the test to open ``gate``."""
    pymw_set_progress(0.5)  # noqa: F405 - the worker provides it, as 0.4's scripts had it
    deadline = time.time() + 60
    while not os.path.exists(gate):
        if time.time() > deadline:
            raise RuntimeError("the test never opened the gate")
        time.sleep(0.01)
    return "through"


def count_bytes(blocks):
    """A file_input map: reads its own [path, start, end] blocks."""
    total = 0
    for path, start, end in blocks:
        with open(path, "rb") as fh:
            fh.seek(start)
            total += fh.read(end - start).count(b"x")
    return total


@pytest.fixture
def master():
    m = pymw.PyMW_Master(interface=interfaces.generic.GenericInterface(num_workers=2))  # noqa: F405
    yield m
    m.close()


# -- the names ------------------------------------------------------------------------


def test_star_import_binds_pymw_and_its_names():
    from pymw_core import Master, TaskError

    assert pymw.PyMW_Master is PyMW_Master  # noqa: F405
    assert issubclass(pymw.PyMW_Master, Master)  # noqa: F405
    assert pymw.TaskException is TaskError  # noqa: F405
    assert pymw.interfaces is interfaces  # noqa: F405 - 0.4's docs: pymw.interfaces.generic...
    from pymw_core.compat import pymw as module  # 0.4's `from pymw import pymw`

    assert module.PyMW_MapReduce is PyMW_MapReduce  # noqa: F405


def test_pymw_core_still_exports_the_0x_names(master):
    import pymw_core

    assert pymw_core.PyMW_Master is pymw.PyMW_Master  # noqa: F405
    assert pymw_core.TaskException is pymw_core.TaskError
    assert isinstance(master, pymw_core.Master)


def test_exceptions_carry_param():
    assert pymw.TaskException("dead parrot").param == "dead parrot"  # noqa: F405
    assert pymw.InterfaceException("no interface").param == "no interface"  # noqa: F405
    assert pymw.TaskException().param is None  # noqa: F405


# -- interfaces: 0.4's names, options and helpers --------------------------------------


def test_parse_options_and_get_interface_build_local():
    parser = OptionParser(usage="usage: %prog")
    parser.add_option("-t", "--num_tests", dest="n_tests", default="100")
    options, _args = interfaces.parse_options(parser, ["-i", "multicore", "-n", "3", "-t", "7"])
    assert (options.interface, options.n_workers, options.n_tests) == ("multicore", "3", "7")
    interface_obj = interfaces.get_interface(options)
    assert type(interface_obj).__name__ == "LocalInterface"
    pymw_master = pymw.PyMW_Master(interface=interface_obj)  # noqa: F405
    try:
        assert pymw_master.get_status()["workers"] == 3
    finally:
        pymw_master.close()


def test_parse_options_defaults_are_0_4s():
    options, _ = interfaces.parse_options(None, [])
    assert (options.interface, options.n_workers) == ("generic", "4")


@pytest.mark.parametrize("name", ["boinc", "ganga"])
def test_interfaces_that_do_not_exist_say_so(name):
    options, _ = interfaces.parse_options(None, ["-i", name])
    with pytest.raises(pymw.InterfaceException, match=f"0.4's '{name}' interface does not exist"):  # noqa: F405
        interfaces.get_interface(options)
    with pytest.raises(pymw.InterfaceException, match="does not exist in PyMW 0.5"):  # noqa: F405
        getattr(interfaces, name)
    assert not hasattr(interfaces, name)


def test_get_interface_takes_installed_0_5_names_and_refuses_unknown_ones():
    options, _ = interfaces.parse_options(None, ["-i", "local", "-n", "3"])
    interface_obj = interfaces.get_interface(options)
    try:  # the installed "local", -n as its num_workers (seen failing when asked for 2)
        assert type(interface_obj).__name__ == "LocalInterface"
        assert interface_obj.get_status()["workers"] == 3
    finally:
        interface_obj.cleanup()
    options, _ = interfaces.parse_options(None, ["-i", "dead_parrot"])
    with pytest.raises(pymw.InterfaceException, match="no PyMW interface named 'dead_parrot'"):  # noqa: F405
        interfaces.get_interface(options)


# -- 0.4's TestPyMW, in its own words ----------------------------------------------------


def test_standard_operation(master):
    num_tasks = 10
    actual_total = num_tasks * (num_tasks - 1) / 2
    tasks1 = [master.submit_task(null_worker, input_data=(i,)) for i in range(num_tasks)]
    tasks2 = [master.submit_task(null_worker, input_data=(i,)) for i in range(num_tasks)]
    tasks3 = [master.submit_task(null_worker, input_data=(i,)) for i in range(num_tasks)]
    total = 0
    for task in tasks1:
        my_task, next_val = master.get_result(task)
        assert my_task.get_total_time() >= 0 and my_task.get_execution_time() >= 0
        total += next_val
    assert total == actual_total
    assert sum(master.get_result(tasks2)[1] for _ in range(num_tasks)) == actual_total
    assert sum(master.get_result()[1] for _ in range(num_tasks)) == actual_total
    assert all(t._task_state == t.TASK_FINISHED == "finished" for t in tasks3)


def test_get_result_of_what_was_not_submitted(master):
    master.submit_task(executable=null_worker, input_data=(1,))
    with pytest.raises(pymw.TaskException):  # noqa: F405
        master.get_result(1234)
    with pytest.raises(pymw.TaskException):  # noqa: F405
        master.get_result([1, 2, 3, 4])
    _, value = master.get_result([])  # 0.4: an empty list means any task
    assert value == 1


def test_get_result_with_nothing_submitted(master):
    with pytest.raises(pymw.TaskException, match="none was submitted"):  # noqa: F405
        master.get_result()


def test_bad_executable_fails_at_get_result(master, tmp_path):
    bad_task = master.submit_task(executable="dead_parrot")
    with pytest.raises(pymw.TaskException, match="'dead_parrot' is not an existing script"):  # noqa: F405
        master.get_result(bad_task)
    assert bad_task._task_state == bad_task.TASK_ERROR == "error"
    broken = tmp_path / "broken.py"
    broken.write_text("def (:\n")
    task = master.submit_task(str(broken))
    with pytest.raises(pymw.TaskException, match="is not valid Python"):  # noqa: F405
        master.get_result(task)
    with pytest.raises(pymw.TaskException, match="executable must be a callable"):  # noqa: F405
        master.submit_task(executable=1)


def test_native_master_still_fails_fast_on_a_bad_script():
    from pymw_core import Master, TaskError

    with Master("local", num_workers=1) as native:
        with pytest.raises(TaskError, match="'dead_parrot' is not an existing script"):
            native.submit_task("dead_parrot")


def test_program_error_is_the_tasks_own(master):
    task = master.submit_task(err_worker)
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        master.get_result(task)


def test_stdout_stderr_by_0_4s_names(master):
    task = master.submit_task(print_worker, modules=("sys",))
    my_task, _ = master.get_result(task)
    assert my_task._stdout == "stdout test" == my_task.stdout
    assert my_task._stderr == "stderr test" == my_task.stderr
    with pytest.raises(AttributeError):
        my_task._stdout = "changed"


def test_map_reduce(master):
    pymw_mapreduce = pymw.PyMW_MapReduce(master)  # noqa: F405
    task_mr = pymw_mapreduce.submit_task_mapreduce(square, plus, 10, input_data=list(range(1, 21)),
                                                   modules=(), dep_funcs=())
    _, result = master.get_result(task_mr)
    assert sum(result) == 2870


def test_map_reduce_file_input(master, tmp_path):
    paths = []
    for index, size in enumerate([5, 0, 13, 1]):
        path = tmp_path / f"part{index}"
        path.write_bytes(b"x" * size)
        paths.append([str(path)])  # 0.4 passed each file as a sequence, the path first
    task_mr = pymw.PyMW_MapReduce(master).submit_task_mapreduce(  # noqa: F405
        count_bytes, null_worker, num_worker=4, input_data=paths, file_input=True)
    _, result = master.get_result(task_mr)
    assert sum(result) == 19
    assert len(result) == 4


def test_send_files(master, tmp_path):
    paths = []
    for index in range(5):
        path = tmp_path / f"data{index}"
        path.write_text("booga")
        paths.append(str(path))

    def check_files(names):
        return all(open(name).read().count("booga") for name in names)

    task = master.submit_task(check_files, input_data=([os.path.basename(p) for p in paths],),
                              data_files=tuple(paths))
    assert master.get_result(task)[1] is True


def test_submit_task_takes_input_from_file(master):
    task = master.submit_task(null_worker, input_data=(3,), input_from_file=True)
    assert master.get_result(task)[1] == 3
    with pytest.raises(pymw.TaskException, match="input_from_file must be True or False"):  # noqa: F405
        master.submit_task(null_worker, input_data=(3,), input_from_file="yes")


# -- progress and 0.4's task states ------------------------------------------------------


def test_get_progress_follows_the_worker(tmp_path):
    # prefetch=0: the second task waits in the master's queue, not behind the first one
    master = pymw.PyMW_Master("local", num_workers=1, prefetch=0)  # noqa: F405
    try:
        with pytest.raises(pymw.TaskException, match="no tasks have been submitted"):  # noqa: F405
            master.get_progress(None)
        gate = tmp_path / "gate"
        task = master.submit_task(halfway, input_data=(str(gate),))
        queued = master.submit_task(null_worker, input_data=(1,))  # behind it, one worker
        wait_until(lambda: master.get_progress(task) == [0.5], 30,
                   "the worker's pymw_set_progress(0.5) to reach get_progress")
        assert task._task_state == task.TASK_RUNNING
        assert queued._task_state == queued.TASK_SUBMITTED == "submitted"
        assert master.get_progress([task, queued]) == [0.5, 0.0]
        assert master.get_progress(None) == []
        gate.touch()
        assert master.get_result(task)[1] == "through"
        assert master.get_progress(task) == [1.0]
        failed = master.submit_task(err_worker)
        with pytest.raises(ZeroDivisionError):
            master.get_result(failed)
        assert master.get_progress(failed) == [0.0]  # 0.4: only a finished task is done
        with pytest.raises(pymw.TaskException):  # noqa: F405
            master.get_progress(["not a task"])
    finally:
        master.close()


# -- 0.4's TestBadInterface --------------------------------------------------------------


class BadInterface:
    """0.4's test interface: fails in the places a careless interface might."""

    def __init__(self):
        self.status_err = self.execute_err = self.worker_err = 0

    def get_available_workers(self):
        if self.worker_err == 1:
            return 5

    def reserve_worker(self, worker):
        if self.worker_err == 1:
            raise Exception()

    def worker_finished(self, worker):
        if self.worker_err == 1:
            raise Exception()

    def execute_task(self, task, worker):
        if self.execute_err == 1:
            raise Exception("execution error")
        task.task_finished(Exception("no problem"))

    def get_status(self):
        if self.status_err == 1:
            return 1
        elif self.status_err == 2:
            raise Exception()


@pytest.fixture
def bad():
    bad_int = BadInterface()
    master = pymw.PyMW_Master(interface=bad_int)  # noqa: F405
    yield bad_int, master
    master.close()


@pytest.mark.parametrize("status_err", [1, 2])
def test_bad_status(bad, status_err):
    bad_int, master = bad
    bad_int.status_err = status_err
    assert master.get_status()["interface_status"] == "error"


def test_good_status_has_no_error_flag():
    class GoodStatus(BadInterface):
        def get_status(self):
            return {"fine": True}

    master = pymw.PyMW_Master(interface=GoodStatus())  # noqa: F405
    try:
        status = master.get_status()
    finally:
        master.close()
    assert status["fine"] is True and "interface_status" not in status


def test_bad_task_execution(bad):
    bad_int, master = bad
    bad_int.execute_err = 1
    task = master.submit_task(null_worker)
    with pytest.raises(Exception, match="execution error"):
        master.get_result(task)


def test_bad_worker_funcs(bad):
    bad_int, master = bad
    bad_int.worker_err = 1
    task = master.submit_task(null_worker)
    with pytest.raises(Exception, match="no problem"):
        master.get_result(task)


def test_positional_arguments_in_0_4s_order():
    import logging

    chosen = []

    def scheduler(task_list, worker_list):
        chosen.append(task_list[-1])
        return task_list[-1], worker_list[0]

    interface_obj = interfaces.generic.GenericInterface(num_workers=1)
    master = pymw.PyMW_Master(interface_obj, logging.CRITICAL, True, scheduler)  # noqa: F405
    try:
        task = master.submit_task(null_worker, input_data=(1,))
        assert master.get_result(task)[1] == 1
        assert chosen == [task]  # the 4th argument is the scheduler
        # the 2nd is the log level (seen failing with logging.ERROR passed instead)
        assert logging.getLogger("pymw").level == logging.CRITICAL
    finally:
        master.close()
