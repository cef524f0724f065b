"""Every example runs as a user would run it, on local with two workers, and is right."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from collections import Counter

import pytest
from pymw_testing import clean_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")


def run_example(name: str, *args: str, expect: int = 0, env: dict | None = None,
                cwd: str | None = None) -> str:
    """Run ``examples/<name>`` in a fresh interpreter; return its stdout."""
    proc = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, name), *args],
        capture_output=True, text=True, timeout=120, env=clean_env(**(env or {})),
        cwd=cwd or ROOT,
    )
    assert proc.returncode == expect, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr if expect else proc.stdout


def pi_estimate(output: str) -> float:
    match = re.search(r"pi is about (\d+\.\d+) \(error ([+-]\d+\.\d+)\)", output)
    assert match, output
    estimate, error = float(match[1]), float(match[2])
    assert error == pytest.approx(estimate - math.pi, abs=2e-6)
    return estimate


def test_monte_pi():
    out = run_example("monte_pi.py", "--interface", "local", "--workers", "2")
    assert abs(pi_estimate(out) - math.pi) < 0.1
    assert "2,000,000 darts in 8 tasks on the 'local' interface" in out


def test_monte_pi_script_runs_a_pymw_0x_worker_script():
    out = run_example("monte_pi_script.py", "--interface", "local", "--workers", "2",
                      "--samples", "400000", "--tasks", "5")
    assert abs(pi_estimate(out) - math.pi) < 0.1
    assert "400,000 darts in 5 tasks running monte_pi_worker.py" in out


def test_both_monte_pi_examples_compute_the_same_darts():
    """The script port is the same computation: same seeds, same shares, same estimate."""
    args = ("--workers", "2", "--samples", "300000", "--tasks", "3")
    assert pi_estimate(run_example("monte_pi.py", *args)) == pi_estimate(
        run_example("monte_pi_script.py", *args))


@pytest.mark.parametrize(("stop", "count"), [(10_000, 841), (100_000, 6656)])
def test_prime_finder_finds_the_known_count(stop, count):
    # OEIS A083844: primes of the form n^2 + 1 with n <= 10^4 and 10^5.
    out = run_example("prime_finder.py", "--workers", "2", "--stop", str(stop))
    assert f"found {count} primes of the form n*n + 1 for n = 1..{stop}" in out


def test_prime_finder_small_range_lists_the_primes():
    out = run_example("prime_finder.py", "--workers", "2", "--stop", "10", "--tasks", "3")
    assert "found 5 primes of the form n*n + 1 for n = 1..10" in out
    assert "largest: 2, 5, 17, 37, 101" in out


def test_genetic_algorithm_evolves_the_optimum():
    out = run_example("genetic_algorithm.py", "--interface", "local", "--workers", "2")
    best = re.search(r"best individual: (\d+)/40 bits set after (\d+) generations", out)
    assert best, out
    assert int(best[1]) == 40
    first = re.search(r"generation   1: best (\d+)/40", out)
    assert first and int(first[1]) < 40, out


def expected_counts(path: str) -> Counter:
    with open(path, encoding="utf-8") as fh:
        words = (w.strip("'") for w in re.findall(r"[a-z']+", fh.read().lower()))
        return Counter(w for w in words if w)


def test_word_count_on_the_shipped_text():
    out = run_example("word_count.py", "--interface", "local", "--workers", "2", "--top", "5")
    want = expected_counts(os.path.join(EXAMPLES, "data", "words.txt"))
    assert f"{sum(want.values())} words, {len(want)} distinct, in words.txt" in out
    printed = re.findall(r"^\s+(\d+)  (\S+)$", out, re.MULTILINE)
    top = sorted(want.items(), key=lambda item: (-item[1], item[0]))[:5]
    assert [(word, int(count)) for count, word in printed] == top
    assert printed[0] == ("54", "the")


def test_word_count_exact_on_a_generated_text(tmp_path):
    text = tmp_path / "made.txt"
    lines = [f"alpha beta {'gamma ' * (i % 3)}delta" for i in range(90)]
    lines += ["Alpha's ALPHA"] * 10
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = run_example("word_count.py", "--workers", "2", "--file", str(text), "--parts", "7")
    assert "380 words, 5 distinct, in made.txt" in out
    for count, word in [(100, "alpha"), (90, "beta"), (90, "delta"), (90, "gamma"),
                        (10, "alpha's")]:
        assert re.search(rf"^\s+{count}  {re.escape(word)}$", out, re.MULTILINE), out
    assert "7 map and 7 reduce tasks" in out


def test_examples_take_the_interface_from_the_environment_and_config(tmp_path):
    # The config file is read: its (misspelt) interface is the one asked for. With
    # pymw.toml ignored, the example ran on the default 'local' and exited 0 (seen by
    # renaming the file to pymw.tom).
    (tmp_path / "pymw.toml").write_text('interface = "lcaol"\n')
    out = run_example("monte_pi.py", "--samples", "20000", expect=2, cwd=str(tmp_path))
    assert "no PyMW interface named 'lcaol'" in out
    # The environment comes before the config file.
    out = run_example("monte_pi.py", "--samples", "20000", cwd=str(tmp_path),
                      env={"PYMW_INTERFACE": "local"})
    assert "on the 'local' interface" in out
    out = run_example("monte_pi.py", "--samples", "20000", expect=2,
                      env={"PYMW_INTERFACE": "lcoal"})
    assert "no PyMW interface named 'lcoal'" in out
    assert "Did you mean 'local'?" in out


def test_a_bad_interface_name_exits_2_with_a_suggestion():
    out = run_example("genetic_algorithm.py", "--interface", "loca", expect=2)
    assert "error: no PyMW interface named 'loca' is installed" in out
    assert "Did you mean 'local'?" in out
