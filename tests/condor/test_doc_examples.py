"""The docs' examples marked ``interface=condor`` run on the test pool (doc_examples.py).

pymw.toml's ``[condor]`` table gives what a site's would (the jobs' python, a work_dir
the pool can reach); CONDOR_CONFIG is the pool's, as in a user's shell on a submit node.
"""

from __future__ import annotations

import json

import pytest
from doc_examples import all_blocks, run

BLOCKS = [b for b in all_blocks() if b.runs and b.interface == "condor"]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_the_condor_example_runs_and_prints_what_the_page_shows(block, condor_pool, job_dir,
                                                                tmp_path):
    run(block, tmp_path, config=(
        'interface = "condor"\n\n[condor]\n'
        f"python = {json.dumps(condor_pool.python_for_jobs())}\n"
        f"work_dir = {json.dumps(str(job_dir))}\n"))
