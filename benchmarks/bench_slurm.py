"""The slurm interface on a real one-node Slurm cluster, beside raw ``sbatch`` in the same run.

``python benchmarks/bench_slurm.py`` starts its own cluster on 127.0.0.1 with
tests/slurm/cluster.py (root, ``slurm-wlm`` and ``munge``; MaxArraySize 1001 here) and
measures:

* **100 short tasks end to end**: 100 short tasks submitted and their results read, beside raw
  ``sbatch --array=0-99`` with one element per task (each element runs the same
  interpreter on one input and writes its answer to a file; done when every answer is
  there and the array has left the queue). The node starts about two jobs a second, so
  one job per task is the slow path PyMW avoids.
* **the peers, end to end**: the same 100 tasks through **submitit**
  (``AutoExecutor.map_array``: one array element per task, as its users write it) and
  **dask-jobqueue** (``SLURMCluster``, one single-core worker job per CPU of the node,
  ``Client.map``), each counted from the first call to the last result, its own
  start-up (scheduler, worker jobs) included as PyMW's is. A peer that is not installed
  is "not measured", with the reason.
* **submit 1,000**: from the first ``submit_task`` until the master has written the
  1,000 requests and submitted elements for them (``max_jobs=1000``: one element per
  task, as many jobs as the raw side), beside one raw ``sbatch --array=0-999``. Both
  arrays wait an hour to start (``--begin``) and are cancelled.
* **controller calls per minute** while 10,000 tasks are queued (elements pending, as
  on a full cluster): every sbatch/squeue/scontrol/scancel the interface runs, counted
  over one minute after the queue settled.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import report
from services import on_service, wait

RAW_SCRIPT = """#!/bin/sh
exec {python} -c 'import os, sys; i = int(os.environ["SLURM_ARRAY_TASK_ID"]); \
open(sys.argv[1] + "/" + str(i), "w").write(str(i * i))' {out}
"""


E2E_TASKS = 100


def square(x):
    return x * x


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def _in_queue(cluster: Any, job: str) -> bool:
    out = cluster.command("squeue", "-h", "-j", job, "-o", "%i")
    return bool(out.stdout.strip())


def _pymw_end_to_end(work_dir: str, n: int) -> dict[str, float]:
    from pymw_core import Master

    t0 = time.perf_counter()
    with Master("slurm", work_dir=work_dir) as master:
        tasks = [master.submit_task(square, (i,)) for i in range(n)]
        results = [master.get_result(task)[1] for task in tasks]
        wall = time.perf_counter() - t0
        jobs = len({master.interface.job_id(task) for task in tasks})
    assert results == [i * i for i in range(n)]
    return {"wall_s": wall, "jobs_used": jobs}


def _raw_end_to_end(cluster: Any, work_dir: str, n: int) -> dict[str, float]:
    out = tempfile.mkdtemp(dir=work_dir)
    script = os.path.join(work_dir, "raw.sh")
    with open(script, "w") as fh:
        fh.write(RAW_SCRIPT.format(python=sys.executable, out=out))
    os.chmod(script, 0o755)
    t0 = time.perf_counter()
    r = cluster.command("sbatch", "--parsable", f"--array=0-{n - 1}", "-o", "/dev/null", script)
    if r.returncode:
        raise RuntimeError(f"sbatch failed: {r.stderr}")
    job = r.stdout.strip().split(";")[0]
    wait(lambda: len(os.listdir(out)) == n and not _in_queue(cluster, job), 600,
          f"{n} raw array elements")
    wall = time.perf_counter() - t0
    assert sorted(int(_read(os.path.join(out, f))) for f in os.listdir(out)) == sorted(
        i * i for i in range(n))
    return {"wall_s": wall}


def _submitit_end_to_end(work_dir: str, n: int) -> dict[str, float]:
    import submitit

    # Without slurmdbd its sacct calls fail and it warns at every poll; results still
    # come from its result files, which is how it decides a job is done.
    logging.getLogger("submitit").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    executor = submitit.AutoExecutor(folder=tempfile.mkdtemp(dir=work_dir), cluster="slurm")
    executor.update_parameters(timeout_min=10, slurm_array_parallelism=n)
    jobs = executor.map_array(square, range(n))
    results = [job.result() for job in jobs]
    wall = time.perf_counter() - t0
    assert results == [i * i for i in range(n)]
    return {"wall_s": wall, "jobs_used": len({job.job_id for job in jobs})}


def _dask_end_to_end(cluster: Any, work_dir: str, n: int) -> dict[str, float]:
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    t0 = time.perf_counter()
    with SLURMCluster(cores=1, processes=1, memory="500MB", walltime="00:10:00",
                      python=sys.executable, log_directory=tempfile.mkdtemp(dir=work_dir),
                      ) as jobs:
        jobs.scale(jobs=cluster.cpus)
        with Client(jobs) as client:
            results = client.gather(client.map(square, range(n)))
        wall = time.perf_counter() - t0
    assert results == [i * i for i in range(n)]
    return {"wall_s": wall, "jobs_used": cluster.cpus}


def _peers(cluster: Any) -> tuple[dict[str, Callable[[str], dict]], dict[str, str]]:
    """The end-to-end measures of the peers that can run here, and why the others cannot."""
    found: dict[str, Callable[[str], dict]] = {}
    missing: dict[str, str] = {}
    for name, module, measure in (
            ("submitit", "submitit", lambda w: _submitit_end_to_end(w, E2E_TASKS)),
            ("dask-jobqueue", "dask_jobqueue",
             lambda w: _dask_end_to_end(cluster, w, E2E_TASKS))):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing[name] = f"not measured: {exc}"
        else:
            found[name] = _importable_here(measure)
    return found, missing


def _importable_here(measure: Callable[[str], dict]) -> Callable[[str], dict]:
    """``measure`` with this folder on the jobs' PYTHONPATH (sbatch passes the environment).

    submitit and dask pickle ``square`` by reference, as ``bench_slurm.square`` when
    run.py imports this module: their jobs must be able to import it. PyMW's own jobs
    do not get the path; it ships what is not installed on the node.
    """
    def measured(work_dir: str) -> dict:
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.pathsep.join(filter(None, (here, os.environ.get("PYTHONPATH"))))
        with mock.patch.dict(os.environ, {"PYTHONPATH": path}):  # restored after, or removed
            return measure(work_dir)

    return measured


def _pymw_submit(work_dir: str, n: int) -> dict[str, float]:
    from pymw_core import Master

    with Master("slurm", work_dir=work_dir, max_jobs=n, sbatch={"begin": "now+3600"}) as master:
        cpu0, t0 = time.process_time(), time.perf_counter()
        for i in range(n):
            master.submit_task(square, (i,))
        calls = time.perf_counter() - t0
        wait(lambda: sum(size for _, size in master.interface.arrays) >= n, 120,
              f"elements for {n} tasks")
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        arrays = len(master.interface.arrays)
    return {"wall_s": wall, "cpu_s": cpu, "submit_task_calls_s": calls, "arrays": arrays}


def _raw_submit(cluster: Any, work_dir: str, n: int) -> dict[str, float]:
    t0 = time.perf_counter()
    r = cluster.command("sbatch", "--parsable", f"--array=0-{n - 1}", "--begin=now+3600",
                        "-o", "/dev/null", "--wrap", "true")
    wall = time.perf_counter() - t0
    if r.returncode:
        raise RuntimeError(f"sbatch failed: {r.stderr}")
    cluster.command("scancel", r.stdout.strip().split(";")[0])
    return {"wall_s": wall}


def _calls_per_minute(work_dir: str, n: int, seconds: float) -> dict[str, float]:
    from pymw_core import Master

    with Master("slurm", work_dir=work_dir, sbatch={"begin": "now+3600"}) as master:
        for i in range(n):
            master.submit_task(square, (i,))
        wait(lambda: master.interface.arrays, 60, "the first array")
        time.sleep(5)  # the first squeue rounds after the submit
        before = master.interface.slurm.calls
        time.sleep(seconds)
        calls = master.interface.slurm.calls - before
    return {"calls_per_minute": calls * 60.0 / seconds, "seconds": seconds, "tasks": n}


def run(repeats: int = 1) -> dict:
    """Start a private cluster, measure, stop it; medians over ``repeats``, with spreads."""
    return on_service("slurm.cluster", "SlurmCluster", _measure, repeats, max_array_size=1001)


def _measure(cluster: Any, repeats: int) -> dict:
    peers, missing = _peers(cluster)
    samples: dict[str, list] = {"pymw_e2e": [], "raw_e2e": [], "pymw_submit": [],
                                "raw_submit": [], **{f"{name}_e2e": [] for name in peers}}
    base = os.path.join(cluster.run_dir, "bench")
    sides = [("raw_e2e", lambda w: _raw_end_to_end(cluster, w, E2E_TASKS)),
             ("pymw_e2e", lambda w: _pymw_end_to_end(w, E2E_TASKS)),
             *((f"{name}_e2e", measure) for name, measure in peers.items())]
    for r in range(repeats):
        work = os.path.join(base, str(r))
        os.makedirs(work)
        samples["raw_submit"].append(_raw_submit(cluster, work, 1000))
        samples["pymw_submit"].append(_pymw_submit(work, 1000))
        for name, measure in sides[r % len(sides):] + sides[:r % len(sides)]:  # taking turns
            samples[name].append(measure(work))
    calls = _calls_per_minute(os.path.join(base, "calls"), 10_000, 60.0)

    def med(name: str, key: str = "wall_s") -> float:
        return statistics.median(s[key] for s in samples[name])

    def spread(name: str) -> str:
        return report.spread(report.summarize([s["wall_s"] for s in samples[name]], False))

    e2e_pymw, e2e_raw = med("pymw_e2e"), med("raw_e2e")
    sub_pymw, sub_raw = med("pymw_submit"), med("raw_submit")
    peer_rows = [{"measure": f"100 short tasks end to end (s): {name}", "pymw": e2e_pymw,
                  "pymw spread": spread("pymw_e2e"), name: med(f"{name}_e2e"),
                  f"{name} spread": spread(f"{name}_e2e"),
                  f"{name} / pymw": med(f"{name}_e2e") / e2e_pymw} for name in peers]
    return {
        "rows": [
            {"measure": "100 short tasks end to end (s)", "pymw": e2e_pymw,
             "pymw spread": spread("pymw_e2e"), "raw sbatch --array": e2e_raw,
             "raw spread": spread("raw_e2e"), "raw / pymw": e2e_raw / e2e_pymw},
            *peer_rows,
            {"measure": "submit 1,000 tasks: first submit_task to all submitted (s)",
             "pymw": sub_pymw, "pymw spread": spread("pymw_submit"), "raw sbatch --array": sub_raw,
             "raw spread": spread("raw_submit"), "pymw / raw": sub_pymw / sub_raw},
            {"measure": "  of which master CPU (s)", "pymw": med("pymw_submit", "cpu_s")},
            {"measure": "controller calls per minute, 10,000 tasks queued",
             "pymw": calls["calls_per_minute"]},
        ],
        "ratios": {"e2e_100_raw_over_pymw": e2e_raw / e2e_pymw,
                   **{f"e2e_100_{name}_over_pymw": med(f"{name}_e2e") / e2e_pymw
                      for name in peers},
                   "submit_1000_pymw_over_raw": sub_pymw / sub_raw},
        "peers": {**{name: "measured" for name in peers}, **missing},
        "pymw_e2e_jobs_used": max(s["jobs_used"] for s in samples["pymw_e2e"]),
        "pymw_submit_arrays": max(s["arrays"] for s in samples["pymw_submit"]),
        "pymw_submit_task_calls_s": med("pymw_submit", "submit_task_calls_s"),
        "calls": calls,
        "setup": {"cluster": f"one node on 127.0.0.1, {cluster.cpus} CPUs "
                             "(tests/slurm/cluster.py, MaxArraySize 1001)",
                  "repeats": repeats},
    }


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    result = run(repeats)
    if "skipped" in result:
        print(f"bench_slurm skipped: {result['skipped']}")
        return
    for row in result["rows"]:
        cells = [f"{k}={v:.3f}" for k, v in row.items() if isinstance(v, float)]
        print(f"{row['measure']:62s} " + "  ".join(cells))
    print(f"jobs used for the 100: {result['pymw_e2e_jobs_used']}; arrays for the 1,000: "
          f"{result['pymw_submit_arrays']}; submit_task calls: "
          f"{result['pymw_submit_task_calls_s']:.3f} s")
    if os.environ.get("BENCH_JSON"):
        with open(os.environ["BENCH_JSON"], "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
