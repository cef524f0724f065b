"""The condor interface on a real HTCondor pool, beside raw ``htcondor2`` in the same run.

Two measurements (``python benchmarks/bench_condor.py``; it starts its own pool on
127.0.0.1 with tests/condor/pool.py, so it needs root, like the tests):

* **submit 1,000**: master time from the first ``submit_task`` until all 1,000 jobs are in
  the schedd's queue (one itemdata submit, one cluster), wall and CPU, beside one raw
  ``Schedd.submit`` of the same 1,000 items. The jobs can never match (``requirements =
  False``), so the pool runs none of them; ``close()`` removes them.
* **100 tasks end to end**: ``Master.map`` over 100 short tasks, beside the same 100 jobs
  (the same interpreter, one itemdata submit, followed in the event log, outputs read
  back) submitted with ``htcondor2`` directly. On a small pool the pool's own scheduling
  dominates both.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Any

from services import on_service, wait


def square(x):
    return x * x


def _pymw_submit(python: str, work_dir: str, n: int) -> dict[str, float]:
    from pymw_core import Master

    with Master("condor", python=python, work_dir=work_dir, max_in_flight=n,
                submit={"requirements": "False"}) as master:
        cpu0, t0 = time.process_time(), time.perf_counter()
        for i in range(n):
            master.submit_task(square, (i,))
        calls = time.perf_counter() - t0

        def queued() -> bool:
            jobs = master.interface.get_status()["jobs"]
            return jobs["unsubmitted"] == 0 and jobs["idle"] == n

        wait(queued, 120, f"{n} jobs in the queue")
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        clusters = master.interface.get_status()["clusters"]
        t1 = time.perf_counter()
    return {"wall_s": wall, "cpu_s": cpu, "submit_task_calls_s": calls,
            "clusters": clusters, "close_s": time.perf_counter() - t1}


def _raw_jobs(python: str, work_dir: str, n: int, runnable: bool) -> tuple[Any, Any, str]:
    """One raw itemdata submit of ``n`` jobs computing i*i; (schedd, result, log path)."""
    import htcondor2

    log = os.path.join(work_dir, f"raw-{time.monotonic_ns()}.log")
    with open(log, "w"):
        pass
    os.chmod(log, 0o666)
    description = {
        "universe": "vanilla",
        "executable": python,
        "transfer_executable": "False",
        "arguments": '"-c \'import sys; print(int(sys.argv[1]) ** 2)\' $(i)"',
        "initialdir": work_dir,
        "log": log,
        "output": "raw-$(i).out",
        "error": "raw-$(i).err",
        "should_transfer_files": "YES",
        "+PyMWBench": '"raw"',
    }
    if not runnable:
        description["requirements"] = "False"
    schedd = htcondor2.Schedd()
    result = schedd.submit(htcondor2.Submit(description),
                           itemdata=iter([{"i": str(i)} for i in range(n)]))
    return schedd, result, log


def _raw_submit(python: str, work_dir: str, n: int) -> dict[str, float]:
    import htcondor2

    cpu0, t0 = time.process_time(), time.perf_counter()
    schedd, result, _ = _raw_jobs(python, work_dir, n, runnable=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    schedd.act(htcondor2.JobAction.Remove, result.cluster(), ("benchmark done", 0))
    return {"wall_s": wall, "cpu_s": cpu}


def _pymw_end_to_end(python: str, work_dir: str, n: int) -> dict[str, float]:
    from pymw_core import Master

    t0 = time.perf_counter()
    with Master("condor", python=python, work_dir=work_dir, max_in_flight=n) as master:
        results = list(master.map(square, range(n)))
        wall = time.perf_counter() - t0
    if results != [i * i for i in range(n)]:
        raise RuntimeError("PyMW returned wrong results")
    return {"wall_s": wall}


def _raw_end_to_end(python: str, work_dir: str, n: int) -> dict[str, float]:
    import htcondor2

    t0 = time.perf_counter()
    _, result, log = _raw_jobs(python, work_dir, n, runnable=True)
    events, done = htcondor2.JobEventLog(log), 0
    cluster = result.cluster()
    while done < n:
        for event in events.events(stop_after=0):
            if event.cluster != cluster:
                continue
            if event.type in (htcondor2.JobEventType.JOB_HELD, htcondor2.JobEventType.JOB_ABORTED):
                raise RuntimeError(f"raw job {event.cluster}.{event.proc} failed: {event}")
            done += event.type == htcondor2.JobEventType.JOB_TERMINATED
        if time.perf_counter() - t0 > 600:
            raise RuntimeError("raw jobs did not finish in 600 s")
        time.sleep(0.05)  # the same follow-the-log polling PyMW does
    outputs = []
    for i in range(n):
        with open(os.path.join(work_dir, f"raw-{i}.out")) as fh:
            outputs.append(int(fh.read()))
    wall = time.perf_counter() - t0
    if outputs != [i * i for i in range(n)]:
        raise RuntimeError("raw jobs returned wrong results")
    events.close()
    return {"wall_s": wall}


def _median(samples: list[dict[str, float]], key: str) -> float:
    return statistics.median(sample[key] for sample in samples)


def run(repeats: int = 1) -> dict:
    """Start a private pool, measure, stop it; medians over ``repeats`` (and every sample)."""
    # PYMW_BENCH_CONDOR_BASE: where the pool's shared dir goes (default: pool.py's choice).
    # The master writes one request file per task there, so that filesystem's cost of
    # creating a file is part of the submit time.
    return on_service("condor.pool", "CondorPool", _measure, repeats,
                      base_dir=os.environ.get("PYMW_BENCH_CONDOR_BASE") or None)


def _measure(pool: Any, repeats: int) -> dict:
    """Raw htcondor2 and PyMW, taking turns, on a started pool the bindings point at."""
    python = pool.python_for_jobs()
    samples: dict[str, list] = {"pymw_submit": [], "raw_submit": [], "pymw_e2e": [],
                                "raw_e2e": []}
    for r in range(repeats):
        base = pool.make_job_dir(f"bench-{r}")
        samples["raw_submit"].append(_raw_submit(python, base, 1000))
        samples["pymw_submit"].append(_pymw_submit(python, base, 1000))
        # Alternate the order so neither side always meets a warm (claimed) pool.
        sides = [("raw_e2e", _raw_end_to_end), ("pymw_e2e", _pymw_end_to_end)]
        for name, measure in sides if r % 2 else sides[::-1]:
            samples[name].append(measure(python, pool.make_job_dir(f"{name}-{r}"), 100))
    submit_pymw = _median(samples["pymw_submit"], "wall_s")
    submit_raw = _median(samples["raw_submit"], "wall_s")
    e2e_pymw = _median(samples["pymw_e2e"], "wall_s")
    e2e_raw = _median(samples["raw_e2e"], "wall_s")
    out: dict[str, Any] = {
        "rows": [
            {"measure": "submit 1,000 tasks: first submit_task to all queued (s)",
             "pymw": submit_pymw, "raw htcondor2": submit_raw,
             "pymw / raw": submit_pymw / submit_raw},
            {"measure": "  of which master CPU (s)",
             "pymw": _median(samples["pymw_submit"], "cpu_s"),
             "raw htcondor2": _median(samples["raw_submit"], "cpu_s")},
            {"measure": "100 short tasks end to end (s)", "pymw": e2e_pymw,
             "raw htcondor2": e2e_raw, "pymw / raw": e2e_pymw / e2e_raw},
        ],
        "ratios": {"submit_1000_pymw_over_raw": submit_pymw / submit_raw,
                   "e2e_100_pymw_over_raw": e2e_pymw / e2e_raw},
        "pymw_submit_clusters": max(s["clusters"] for s in samples["pymw_submit"]),
        "pymw_submit_task_calls_s": _median(samples["pymw_submit"], "submit_task_calls_s"),
        "setup": {"pool": "personal pool on 127.0.0.1, 4 slots (tests/condor/pool.py)",
                  "shared_dir": pool.shared_dir, "python_for_jobs": python,
                  "repeats": repeats},
    }
    if repeats > 1:
        out["samples_wall_s"] = {name: [round(v["wall_s"], 3) for v in values]
                                 for name, values in samples.items()}
    return out


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    result = run(repeats)
    if "skipped" in result:
        print(f"bench_condor skipped: {result['skipped']}")
        return
    for row in result["rows"]:
        cells = [f"{k}={v:.3f}" for k, v in row.items() if isinstance(v, float)]
        print(f"{row['measure']:58s} " + "  ".join(cells))
    print(f"clusters for the 1,000: {result['pymw_submit_clusters']}; "
          f"submit_task calls: {result['pymw_submit_task_calls_s']:.3f} s")
    if os.environ.get("BENCH_JSON"):
        with open(os.environ["BENCH_JSON"], "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
