"""The docs' examples marked ``interface=slurm`` run on the test cluster (doc_examples.py).

pymw.toml's ``[slurm]`` table gives what a site's would (a shared work_dir); SLURM_CONF
is the cluster's, as in a user's shell on a login node.
"""

from __future__ import annotations

import json

import pytest
from doc_examples import all_blocks, run

BLOCKS = [b for b in all_blocks() if b.runs and b.interface == "slurm"]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_the_slurm_example_runs_and_prints_what_the_page_shows(block, slurm_cluster, work_dir,
                                                               tmp_path):
    run(block, tmp_path, config=(
        f'interface = "slurm"\n\n[slurm]\nwork_dir = {json.dumps(str(work_dir))}\n'))
