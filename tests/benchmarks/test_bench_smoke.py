"""The benchmark runner keeps working: its tiniest run writes a table of real numbers.

No timing is asserted (this machine is shared and noisy); only that the suite runs
end to end and that what it publishes has the promised shape.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER = os.path.join(ROOT, "benchmarks", "run.py")


def test_the_tiniest_run_writes_a_table_with_numeric_ratios(tmp_path):
    # Its own session: on a time-out the whole tree goes (pools, workers), not the runner alone.
    child = subprocess.Popen(
        [sys.executable, RUNNER, "--tiny", "--only",
         "local-throughput,master-scaling,master-workers", "--out", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        _, err = child.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        _, err = child.communicate()
        pytest.fail(f"the tiny benchmark run did not end within 240 s; its log:\n{err}")
    assert child.returncode == 0, err
    # A partial run (--only) has a name of its own: it never overwrites a complete run's.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-partial.json", "tiny-partial.md"]
    results = json.loads((tmp_path / "tiny-partial.json").read_text())
    table = (tmp_path / "tiny-partial.md").read_text()

    assert set(results["sections"]) == {"local-throughput", "master-scaling", "master-workers"}
    rows = {row["runner"]: row for row in results["sections"]["local-throughput"]["rows"]}
    assert "pymw local" in rows and "ProcessPoolExecutor" in rows
    for row in rows.values():
        assert row["best"] > 0 and row["spread_pct"] >= 0 and row["repeats"] == 1
    ratio = results["ratios"]["throughput: pymw local / ProcessPoolExecutor"]
    assert isinstance(ratio, float) and math.isfinite(ratio) and ratio > 0
    assert all(isinstance(v, float) and math.isfinite(v) for v in results["ratios"].values())

    sizes = [row["tasks"] for row in results["sections"]["master-scaling"]["rows"]]
    assert sizes == [100, 1000]
    assert all(row["total"]["best"] > 0 for row in results["sections"]["master-scaling"]["rows"])

    assert "| pymw local | " in table and "÷ ProcessPoolExecutor" in table
    assert "## The master's cost as tasks grow" in table

    workers = results["sections"]["master-workers"]["rows"]
    assert [row["workers"] for row in workers] == [1, 10, 100]
    assert all(row["rate"]["best"] > 0 and row["cpu"]["best"] > 0 for row in workers)
    assert "## The master's cost as workers grow" in table
    flat = results["ratios"]["master CPU µs/task with 10+ simulated workers: most / least "
                              "median"]
    medians = [row["cpu_median"] for row in workers if row["workers"] >= 10]
    assert flat == max(medians) / min(medians) >= 1.0
    assert "benchmarks/run.py --tiny" in results["meta"]["command"]
    targets = {t["target"]: t for t in results["targets"]}
    target = targets["null-task throughput ≥ ProcessPoolExecutor's"]
    assert target["met"] is (ratio >= 1.0), target


def test_the_joblib_bench_measures_calls_by_name_beside_loky():
    pytest.importorskip("joblib")  # CI installs it (noxfile TEST_DEPS)
    # A process of its own: loky's executor and resource trackers end with it.
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {os.path.join(ROOT, 'benchmarks')!r})\n"
        "import bench_joblib\n"
        "r = bench_joblib.run(1, calls=300, long_calls=2, long_seconds=0.01, named_calls=300)\n"
        "print(json.dumps(r))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = child.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        _, err = child.communicate()
        pytest.fail(f"bench_joblib.run did not end within 240 s; its log:\n{err}")
    assert child.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    ratio = result["by name calls/s pymw / loky"]
    assert isinstance(ratio, float) and math.isfinite(ratio) and ratio > 0
    assert all(row["by name calls/s (best)"] > 0 for row in result["rows"])
    assert result["samples"]["pymw"]["named_calls_s"] and result["samples"]["loky"]["named_calls_s"]
