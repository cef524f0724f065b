"""joblib's ``Parallel`` on the "pymw" backend (``local``) beside joblib's own ``loky``.

``python benchmarks/bench_joblib.py [repeats]`` runs the same ``joblib.Parallel``
workloads on both backends with 2 workers each, taking turns inside each repeat:

* **many short calls**: 50,000 calls of a function that does almost nothing, in one
  ``Parallel`` call with joblib's auto-batching; calls/s (the aim of issue 14: at
  least loky's).
* **by name**: ``Parallel(n_jobs=2, backend=name)`` on 20,000 short calls, each
  repeat a new ``Parallel`` call outside any ``parallel_config`` block, as a user
  writes it: joblib makes a new backend object per call, so this shows whether the
  workers are reused across calls (loky's executor is; the pymw backend shares one
  master per interface and options); calls/s.
* **a few long calls**: 8 calls of pure-Python CPU work of 0.25 s each (calibrated
  here), in one ``Parallel`` call; seconds, beside the ideal (serial time / workers).

Both backends are warm when measured: loky's reusable executor has its processes,
and the pymw backend's masters (made at their first ``Parallel`` call: one for the
backend object, one shared by the calls by name) their workers; the pymw backend's
start-up is reported on its own. Each figure is the best of
``repeats`` with its spread ((worst - best) / best); the comparisons are ratios of
figures from the same run.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
WORKERS = 2


def _best(values: list[float], higher: bool) -> dict[str, float]:
    best, worst = (max(values), min(values)) if higher else (min(values), max(values))
    return {"best": best, "spread_pct": abs(worst - best) / best * 100, "repeats": len(values)}


def run(repeats: int = 3, calls: int = 50_000, long_calls: int = 8,
        long_seconds: float = 0.25, named_calls: int = 20_000) -> dict:
    """Measure both backends, taking turns; the best of ``repeats`` with spreads and ratios."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    try:
        import joblib
        from joblib import Parallel, delayed
    except ImportError as exc:
        return {"skipped": f"joblib is not installed ({exc}): pip install 'pymw-core[joblib]'"}
    from workloads import calibrate_spin, null, spin

    from pymw_core import joblib_backend

    joblib_backend.register()
    loops = calibrate_spin(long_seconds)
    started = time.perf_counter()
    spin(loops)
    serial_one = time.perf_counter() - started

    def short(backend: str, **options: Any) -> float:
        with joblib.parallel_config(backend=backend, n_jobs=WORKERS, **options):
            started = time.perf_counter()
            Parallel()(delayed(null)() for _ in range(calls))
            return calls / (time.perf_counter() - started)

    def long(backend: str, **options: Any) -> float:
        with joblib.parallel_config(backend=backend, n_jobs=WORKERS, **options):
            started = time.perf_counter()
            Parallel()(delayed(spin)(loops) for _ in range(long_calls))
            return time.perf_counter() - started

    def by_name(backend: str) -> float:
        started = time.perf_counter()
        Parallel(n_jobs=WORKERS, backend=backend)(delayed(null)() for _ in range(named_calls))
        return named_calls / (time.perf_counter() - started)

    samples: dict[str, dict[str, list[float]]] = {
        name: {"calls_s": [], "named_calls_s": [], "long_s": []} for name in ("pymw", "loky")
    }
    backend = joblib_backend.PyMWBackend("local", num_workers=WORKERS)
    pymw = {"backend": backend}
    started = time.perf_counter()
    with joblib.parallel_config(backend=backend, n_jobs=WORKERS):
        Parallel()(delayed(null)() for _ in range(WORKERS))  # makes the master
    pymw_start = time.perf_counter() - started
    try:
        for options in (pymw, {"backend": "loky"}):  # warm up: loky starts its processes
            short(**options)
        for name in (joblib_backend.NAME, "loky"):  # and the master shared by name its own
            by_name(name)
        for repeat in range(repeats):
            order = [("pymw", pymw), ("loky", {"backend": "loky"})]
            if repeat % 2:
                order.reverse()  # neither always meets the machine first
            for name, options in order:
                samples[name]["calls_s"].append(short(**options))
            for name, options in order:
                samples[name]["named_calls_s"].append(by_name(options["backend"] if name == "loky"
                                                              else joblib_backend.NAME))
            for name, options in order:
                samples[name]["long_s"].append(long(**options))
    finally:
        backend.close()
        joblib_backend.PyMWBackend().close()  # the master the calls by name shared
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)  # loky's workers leave with the run
    rows, best = [], {}
    for name, label in (("pymw", f"pymw backend, local ({WORKERS} workers)"),
                        ("loky", f"loky ({WORKERS} workers)")):
        rate = _best(samples[name]["calls_s"], higher=True)
        wall = _best(samples[name]["long_s"], higher=False)
        named = _best(samples[name]["named_calls_s"], higher=True)
        best[name] = (rate["best"], wall["best"], named["best"])
        rows.append({
            "backend": label,
            "short calls/s (best)": round(rate["best"]),
            "spread": f"±{rate['spread_pct']:.0f}% ({rate['repeats']})",
            "by name calls/s (best)": round(named["best"]),
            "by name spread": f"±{named['spread_pct']:.0f}% ({named['repeats']})",
            f"{long_calls} long calls s (best)": round(wall["best"], 3),
            "long spread": f"±{wall['spread_pct']:.0f}% ({wall['repeats']})",
        })
    ideal = serial_one * long_calls / WORKERS
    return {
        "rows": rows,
        "short calls/s pymw / loky": best["pymw"][0] / best["loky"][0],
        "by name calls/s pymw / loky": best["pymw"][2] / best["loky"][2],
        "long calls seconds pymw / loky": best["pymw"][1] / best["loky"][1],
        "long calls seconds pymw / ideal": best["pymw"][1] / ideal,
        "long calls seconds loky / ideal": best["loky"][1] / ideal,
        "pymw backend start-up s (master, 2 local workers)": round(pymw_start, 3),
        "short calls per repeat": calls,
        "by name calls per repeat": named_calls,
        "long call seconds (serial, here)": round(serial_one, 3),
        "joblib": joblib.__version__,
        "samples": samples,
    }


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    result = run(repeats)
    from report import print_result

    print_result("bench_joblib", result)


if __name__ == "__main__":
    main()
