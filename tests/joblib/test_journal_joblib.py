"""The joblib backend resumes from a journal: a Parallel call run again finds its
batches there and runs none of them (a marker file per run of a call). With a journal,
"auto" batching is one call per task: timings would batch a second run differently."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from pymw_testing import clean_env, require_module

require_module("joblib", "the joblib backend's tests need joblib")

PROGRAM = textwrap.dedent("""
    import os, sys, uuid
    import joblib
    from joblib import Parallel, delayed
    from pymw_core import joblib_backend

    MARKS, JOURNAL, BATCH = sys.argv[1], sys.argv[2], sys.argv[3]

    def double(x):
        open(os.path.join(MARKS, f"{x}-{uuid.uuid4().hex}"), "w").close()
        return 2 * x

    if __name__ == "__main__":
        joblib_backend.register()
        batch = "auto" if BATCH == "auto" else int(BATCH)
        with joblib.parallel_config(backend="pymw", interface="local", num_workers=2,
                                    journal=JOURNAL):
            print(Parallel(n_jobs=2, batch_size=batch)(delayed(double)(i) for i in range(40)))
""")


@pytest.mark.parametrize("batch", ["auto", "3"])
def test_a_parallel_call_run_again_is_answered_from_the_journal(tmp_path, batch):
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    marks = tmp_path / "marks"
    marks.mkdir()

    def run():
        done = subprocess.run([sys.executable, str(script), str(marks),
                               str(tmp_path / "run.db"), batch],
                              capture_output=True, text=True, env=clean_env(), timeout=180)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    expected = str([2 * i for i in range(40)])
    assert run() == expected
    assert len(os.listdir(marks)) == 40
    assert run() == expected
    assert len(os.listdir(marks)) == 40  # nothing ran again
