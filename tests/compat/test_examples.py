"""Whole PyMW 0.4-style programs, run as 0.4's examples were: from the command line,
with ``-i/--interface`` and ``-n/--num_workers``."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from pymw_testing import clean_env, require

# In the manner of 0.4's examples/monte_pi.py: star import, interfaces' options, a
# function with a dependency and modules=, results collected in any order.
MONTE_PI = textwrap.dedent("""\
    from pymw_core.compat import *
    from pymw_core.compat import interfaces
    import random
    from optparse import OptionParser

    def throw_dart():
        pt = math.pow(random.random(), 2) + math.pow(random.random(), 2)
        return 1 if pt <= 1 else 0

    def monte_pi(rand_seed, num_tests):
        random.seed(rand_seed)
        return [sum(throw_dart() for i in range(num_tests)), num_tests]

    parser = OptionParser(usage="usage: %prog")
    parser.add_option("-t", "--num_tests", dest="n_tests", default="40000")
    options, args = interfaces.parse_options(parser)
    n_workers, n_tests = int(options.n_workers), int(options.n_tests)
    interface_obj = interfaces.get_interface(options)
    pymw_master = pymw.PyMW_Master(interface=interface_obj)
    tasks = [pymw_master.submit_task(monte_pi, input_data=(i, n_tests // n_workers),
                                     modules=("random", "math"), dep_funcs=(throw_dart,))
             for i in range(n_workers)]
    hits = total = 0
    for i in range(n_workers):
        res_task, result = pymw_master.get_result()
        hits += result[0]
        total += result[1]
    print("Estimate of pi:", 4.0 * hits / total)
    print("Status:", sorted(pymw_master.get_status()))
""")


def run_program(tmp_path, *args, env=None):
    program = tmp_path / "monte_pi.py"
    program.write_text(MONTE_PI)
    return subprocess.run([sys.executable, str(program), *args], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env=env or clean_env())


def estimate(output: str) -> float:
    line = next(x for x in output.splitlines() if x.startswith("Estimate of pi:"))
    return float(line.split(":")[1])


@pytest.mark.parametrize("interface", ["generic", "multicore"])
def test_monte_pi_runs_on_local(tmp_path, interface):
    done = run_program(tmp_path, "-i", interface, "-n", "2")
    assert done.returncode == 0, done.stderr
    assert abs(estimate(done.stdout) - 3.14159) < 0.05


def test_an_interface_0_5_lacks_ends_the_program_saying_so(tmp_path):
    done = run_program(tmp_path, "-i", "ganga")
    assert done.returncode == 1
    assert "PyMW 0.4's 'ganga' interface does not exist in PyMW 0.5" in done.stderr


def test_monte_pi_runs_on_mpi(tmp_path):
    require(shutil.which("mpiexec") is not None,
            "mpiexec is not installed (apt-get install openmpi-bin libopenmpi-dev)")
    require(importlib.util.find_spec("mpi4py") is not None, "mpi4py is not installed")
    env = clean_env()
    if os.geteuid() == 0:  # Open MPI refuses root unless told twice (tests/mpi does the same)
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    done = run_program(tmp_path, "-i", "mpi", "-n", "2", env=env)
    assert done.returncode == 0, done.stderr
    assert abs(estimate(done.stdout) - 3.14159) < 0.05
