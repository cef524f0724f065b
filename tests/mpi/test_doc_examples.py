"""The docs' examples marked ``interface=mpi`` run with the real Open MPI (doc_examples.py).

Nothing is configured for them: as root, the environment has Open MPI's two
OMPI_ALLOW_RUN_AS_ROOT* variables, which mpi.md tells root users to set.
"""

from __future__ import annotations

import pytest
from doc_examples import all_blocks, run

BLOCKS = [b for b in all_blocks() if b.runs and b.interface == "mpi"]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_the_mpi_example_runs_and_prints_what_the_page_shows(block, mpi, tmp_path):
    run(block, tmp_path)
