"""The mpi interface beside mpi4py's own MPIPoolExecutor and beside ``local``, in one run.

``python benchmarks/bench_mpi.py [repeats]`` needs Open MPI's ``mpiexec`` and mpi4py
(as root it sets OMPI_ALLOW_RUN_AS_ROOT for its own children). With 2 worker ranks
(2 worker processes for ``local``), taking turns inside each repeat, it measures:

* **null-task throughput**: ``tasks`` tasks that return None, submitted at once, every
  result collected; tasks/s.
* **round trip**: one task submitted, its result awaited, ``trips`` times in a row; the
  median and 90th percentile in milliseconds.

Runners: PyMW ``mpi`` self-launched (a plain process starts ``mpiexec``), PyMW ``mpi``
under ``mpiexec -n 3 python -m pymw_mpi``, ``mpi4py.futures.MPIPoolExecutor`` under
``mpiexec -n 3 python -m mpi4py.futures`` (its recommended, spawn-free launch), and
PyMW ``local``. Start-up is not timed. Each figure is the best of ``repeats`` with its
spread; the comparisons are ratios between figures of the same run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

HERE = os.path.abspath(__file__)
WORKERS = 2
MARK = "@@BENCH@@"


def null():
    return None


def _measure(submit: Any, result: Any, tasks: int, trips: int) -> dict[str, float]:
    for handle in [submit() for _ in range(min(tasks, 500))]:  # warm up
        result(handle)
    started = time.perf_counter()
    handles = [submit() for _ in range(tasks)]
    for handle in handles:
        result(handle)
    rate = tasks / (time.perf_counter() - started)
    times = []
    for _ in range(trips):
        started = time.perf_counter()
        result(submit())
        times.append(time.perf_counter() - started)
    times.sort()
    return {"throughput": rate, "median_ms": statistics.median(times) * 1e3,
            "p90_ms": times[int(0.9 * (len(times) - 1))] * 1e3}


def _pymw(master: Any, tasks: int, trips: int) -> dict[str, float]:
    return _measure(lambda: master.submit_task(null),
                    lambda t: master.get_result(t), tasks, trips)


def _child(kind: str, tasks: int, trips: int) -> None:
    """Inside ``mpiexec``: rank 0 measures, prints one JSON line."""
    if kind == "futures":
        from mpi4py.futures import MPIPoolExecutor

        with MPIPoolExecutor() as pool:
            figures = _measure(lambda: pool.submit(null), lambda f: f.result(), tasks, trips)
    else:
        from pymw_core import Master

        with Master("mpi") as master:
            figures = _pymw(master, tasks, trips)
    print(MARK + json.dumps(figures), flush=True)


def _under_mpiexec(module: str, kind: str, tasks: int, trips: int) -> dict[str, float]:
    command = [shutil.which("mpiexec") or "mpiexec", "--oversubscribe", "-n", str(WORKERS + 1),
               sys.executable, "-m", module, HERE, "--child", kind, str(tasks), str(trips)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          start_new_session=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command[:6])} ... failed: {done.stderr.strip()[-300:]}")
    return json.loads(lines[-1][len(MARK):])


def _best(values: list[float], higher: bool) -> dict[str, float]:
    best, worst = (max(values), min(values)) if higher else (min(values), max(values))
    return {"best": best, "spread_pct": abs(worst - best) / best * 100, "repeats": len(values)}


def unavailable() -> str | None:
    if shutil.which("mpiexec") is None:
        return "mpiexec is not installed (apt-get install openmpi-bin libopenmpi-dev)"
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install mpi4py)"
    if importlib.util.find_spec("pymw_mpi") is None:
        return "pymw-mpi is not installed (pip install plugins/pymw_mpi)"
    return None


NAMES = {
    "mpi": f"pymw mpi, self-launched ({WORKERS} worker ranks)",
    "mpi-under": f"pymw mpi, under mpiexec ({WORKERS} worker ranks)",
    "futures": f"mpi4py.futures.MPIPoolExecutor ({WORKERS} worker ranks)",
    "local": f"pymw local ({WORKERS} workers)",
}


def run(repeats: int = 3, tasks: int = 10_000, trips: int = 500) -> dict:
    """Measure every runner, taking turns; the best of ``repeats`` with spreads and ratios."""
    reason = unavailable()
    if reason:
        return {"skipped": reason}
    if os.geteuid() == 0:
        os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    from pymw_core import Master

    samples: dict[str, list[dict[str, float]]] = {name: [] for name in NAMES}
    started = time.perf_counter()
    mpi = Master("mpi", num_workers=WORKERS)
    mpi_start = time.perf_counter() - started
    local = Master("local", num_workers=WORKERS)
    try:
        for _ in range(repeats):
            samples["mpi"].append(_pymw(mpi, tasks, trips))
            samples["futures"].append(_under_mpiexec("mpi4py.futures", "futures", tasks, trips))
            samples["mpi-under"].append(_under_mpiexec("pymw_mpi", "pymw", tasks, trips))
            samples["local"].append(_pymw(local, tasks, trips))
    finally:
        mpi.close()
        local.close()
    rows, best = [], {}
    for key, label in NAMES.items():
        tput = _best([s["throughput"] for s in samples[key]], higher=True)
        median = _best([s["median_ms"] for s in samples[key]], higher=False)
        p90 = _best([s["p90_ms"] for s in samples[key]], higher=False)
        best[key] = (tput["best"], median["best"])
        rows.append({
            "runner": label,
            "null tasks/s (best)": round(tput["best"]),
            "spread": f"±{tput['spread_pct']:.0f}% ({tput['repeats']})",
            "round trip median ms": round(median["best"], 3),
            "round trip p90 ms": round(p90["best"], 3),
            "round trip spread": f"±{median['spread_pct']:.0f}% ({median['repeats']})",
        })
    return {
        "rows": rows,
        "throughput mpi / MPIPoolExecutor": best["mpi"][0] / best["futures"][0],
        "throughput mpi under mpiexec / MPIPoolExecutor": best["mpi-under"][0] / best["futures"][0],
        "throughput mpi / local": best["mpi"][0] / best["local"][0],
        "round trip mpi / MPIPoolExecutor": best["mpi"][1] / best["futures"][1],
        "round trip mpi under mpiexec / MPIPoolExecutor": best["mpi-under"][1] / best["futures"][1],
        "round trip mpi / local": best["mpi"][1] / best["local"][1],
        "mpi start-up s (mpiexec, 3 ranks, hello)": round(mpi_start, 3),
        "tasks per throughput repeat": tasks,
        "round trips per repeat": trips,
        "samples": samples,
    }


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    result = run(repeats)
    from report import print_result

    print_result("bench_mpi", result)


if __name__ == "__main__":
    main()
