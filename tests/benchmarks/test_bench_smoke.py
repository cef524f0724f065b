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
        [sys.executable, RUNNER, "--tiny", "--only", "local-throughput,master-scaling",
         "--out", str(tmp_path), "--name", "smoke"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        _, err = child.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        _, err = child.communicate()
        pytest.fail(f"the tiny benchmark run did not end within 240 s; its log:\n{err}")
    assert child.returncode == 0, err
    results = json.loads((tmp_path / "smoke.json").read_text())
    table = (tmp_path / "smoke.md").read_text()

    assert set(results["sections"]) == {"local-throughput", "master-scaling"}
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
    assert "benchmarks/run.py --tiny" in results["meta"]["command"]
    targets = {t["target"]: t for t in results["targets"]}
    target = targets["null-task throughput ≥ ProcessPoolExecutor's"]
    assert target["met"] is (ratio >= 1.0), target
