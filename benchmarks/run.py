"""PyMW beside its peers, measured in one run on one machine: ``nox -s bench``.

    python benchmarks/run.py                 # the full suite (~30 minutes): latest.md + plots
    python benchmarks/run.py --quick         # a smoke check (~2 minutes): quick.md
    python benchmarks/run.py --only local-throughput,master-scaling   # partial.md: not latest

Machines are noisy, so every figure is the best of several repeats with its spread,
the runners take turns inside each repeat, and the comparisons are ratios between
figures of the same run. Writes ``<name>.md`` (the table), ``<name>.json`` (every
number) and, for the full run, the PNG plots that docs/performance.md shows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import machine
import measure
import report
from runners import RUNNERS, ProcessPerTask, RawPipe, Runner
from workloads import calibrate_spin

HERE = os.path.dirname(os.path.abspath(__file__))
WORKERS = 2


@dataclasses.dataclass(frozen=True)
class Profile:
    """How much of everything to do: the full run, the smoke check, the test suite's."""

    name: str
    repeats: int
    tasks: int  # null tasks per throughput repeat
    per_task_tasks: int  # the same for the process-per-task runner (two orders slower)
    trips: int  # sequential round trips per latency repeat
    per_task_trips: int
    payload_tasks: int  # 1 MB echo tasks per payload repeat
    per_task_payload_tasks: int
    cpu_tasks: int
    cpu_seconds: float  # each CPU-bound task's length, run serially here
    memory: tuple[tuple[str, int], ...]  # (kind, tasks queued) measured in a fresh process
    traced: tuple[tuple[str, int], ...]  # the same, counted by tracemalloc too
    scaling: tuple[tuple[int, int], ...]  # (tasks, repeats) for the master's cost per task
    workers: tuple[tuple[int, ...], int, int]  # (simulated worker counts, tasks, repeats)
    stream: tuple[int, int, tuple[int, ...]]  # (tasks, window, claimed counts to read RSS at)
    functions: tuple[int, tuple[int, ...]]  # (distinct functions, counts to read the worker at)
    ssh_repeats: int  # bench_ssh.run(repeats); 0: not run
    mpi_repeats: int  # bench_mpi.run(repeats); 0: not run (skipped by itself without MPI)
    condor_repeats: int  # bench_condor.run(repeats); 0: not run (it starts an HTCondor pool)
    joblib_repeats: int  # bench_joblib.run(repeats); 0: not run
    slurm_repeats: int  # bench_slurm.run(repeats); 0: not run (it starts a Slurm cluster)
    peer_timeout: float  # seconds each of them may take


# Small sizes repeat more: the best of many short runs is as steady as one long one.
FULL = Profile(
    name="full", repeats=3, tasks=20_000, per_task_tasks=200, trips=1000, per_task_trips=30,
    payload_tasks=100, per_task_payload_tasks=20, cpu_tasks=8, cpu_seconds=0.25,
    memory=(("pymw-never", 100_000), ("pymw-never", 1_000_000), ("pymw-local-busy", 100_000),
            ("pymw-local-busy", 1_000_000), ("ppe-busy", 100_000), ("pool-busy", 100_000)),
    traced=(("pymw-never", 100_000),),
    scaling=((1_000, 30), (10_000, 10), (100_000, 3), (1_000_000, 2)),
    workers=((1, 10, 100, 1_000, 10_000), 50_000, 5),
    stream=(1_000_000, 2_000, (10_000, 100_000, 1_000_000)),
    functions=(100_000, (1_000, 10_000, 100_000)),
    ssh_repeats=3, mpi_repeats=3,
    joblib_repeats=3, condor_repeats=2, slurm_repeats=3, peer_timeout=420.0,
)
QUICK = Profile(
    name="quick", repeats=2, tasks=5_000, per_task_tasks=40, trips=300, per_task_trips=10,
    payload_tasks=30, per_task_payload_tasks=5, cpu_tasks=4, cpu_seconds=0.1,
    memory=(("pymw-never", 100_000), ("ppe-busy", 100_000)), traced=(),
    scaling=((1_000, 10), (10_000, 3), (100_000, 1)),
    workers=((1, 10, 100, 1_000, 10_000), 10_000, 2),
    stream=(100_000, 2_000, (10_000, 100_000)),
    functions=(10_000, (1_000, 10_000)),
    ssh_repeats=1, mpi_repeats=1,
    joblib_repeats=1, condor_repeats=0, slurm_repeats=0, peer_timeout=120.0,
)
TINY = Profile(
    name="tiny", repeats=1, tasks=200, per_task_tasks=6, trips=30, per_task_trips=3,
    payload_tasks=4, per_task_payload_tasks=2, cpu_tasks=2, cpu_seconds=0.01,
    memory=(("pymw-never", 2_000),), traced=(("pymw-never", 2_000),),
    scaling=((100, 1), (1_000, 1)),
    workers=((1, 10, 100), 300, 1),
    stream=(2_000, 500, (1_000, 2_000)),
    functions=(400, (100, 400)),
    ssh_repeats=0, mpi_repeats=0,
    condor_repeats=0, joblib_repeats=0, slurm_repeats=0, peer_timeout=60.0,
)

LOCAL = ("local-throughput", "local-latency", "local-payload", "local-cpu")
SECTIONS = (*LOCAL, "local-memory", "master-scaling", "master-workers", "long-stream", "ssh",
            "mpi", "condor", "slurm", "joblib", "journal")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- local: every runner, taking turns inside each repeat ------------------------------------


def run_local(profile: Profile, only: set[str]) -> dict[str, Any]:
    """The pool measurements; returns section -> {runner name -> per-repeat values}."""
    wanted = [s for s in LOCAL if s in only]
    values: dict[str, dict[str, list[Any]]] = {s: {} for s in wanted}
    missing: dict[str, str] = {}
    runners: list[type[Runner]] = []
    for cls in RUNNERS:
        reason = cls.unavailable()
        if reason:
            missing[cls.name] = reason
        else:
            runners.append(cls)
    loops = calibrate_spin(profile.cpu_seconds) if "local-cpu" in wanted else 0
    for repeat in range(profile.repeats):
        log(f"[local] repeat {repeat + 1}/{profile.repeats}")
        _baselines(profile, wanted, values, loops)
        # Rotate who goes first, so no runner always meets the same machine state.
        shift = repeat % len(runners)
        for cls in runners[shift:] + runners[:shift]:
            if cls.name in missing:
                continue
            try:
                _one_runner(cls, profile, wanted, values, loops)
            except Exception as exc:
                missing[cls.name] = f"failed: {type(exc).__name__}: {exc}"
                log(f"  {cls.name} failed: {exc!r}")
                for section in values.values():
                    section.pop(cls.name, None)
    return {"values": values, "missing": missing, "spin_loops": loops}


def _baselines(profile: Profile, wanted: list[str], values: dict, loops: int) -> None:
    if "local-latency" in wanted or "local-payload" in wanted:
        with RawPipe() as pipe:
            if "local-latency" in wanted:
                times = measure.pipe_latency(pipe, profile.trips)
                values["local-latency"].setdefault(RawPipe.name, []).append(
                    measure.latency_summary(times))
            if "local-payload" in wanted:
                speed = measure.pipe_payload(pipe, profile.payload_tasks)
                values["local-payload"].setdefault(RawPipe.name, []).append(speed)
    if "local-cpu" in wanted:
        seconds = measure.cpu_serial(profile.cpu_tasks, loops)
        values["local-cpu"].setdefault("serial (this process)", []).append(seconds)


def _one_runner(cls: type[Runner], profile: Profile, wanted: list[str], values: dict,
                loops: int) -> None:
    slow = cls is ProcessPerTask
    with cls(WORKERS) as runner:
        measure.warm_up(runner)
        said = []
        if "local-throughput" in wanted:
            n = profile.per_task_tasks if slow else profile.tasks
            rate = measure.throughput(runner, n)
            values["local-throughput"].setdefault(cls.name, []).append(rate)
            said.append(f"{rate:,.0f} tasks/s")
        if "local-latency" in wanted:
            times = measure.latency(runner, profile.per_task_trips if slow else profile.trips)
            summary = measure.latency_summary(times)
            values["local-latency"].setdefault(cls.name, []).append(summary)
            said.append(f"{summary['median_us']:,.0f} µs median")
        if "local-payload" in wanted:
            n = profile.per_task_payload_tasks if slow else profile.payload_tasks
            speed = measure.payload(runner, n)
            values["local-payload"].setdefault(cls.name, []).append(speed)
            said.append(f"{speed:,.0f} MB/s")
        if "local-cpu" in wanted:
            seconds = measure.cpu_bound(runner, profile.cpu_tasks, loops)
            values["local-cpu"].setdefault(cls.name, []).append(seconds)
            said.append(f"{seconds:.2f} s CPU-bound")
    log(f"  {cls.name}: {', '.join(said)}")


# -- fresh processes: memory and the master's growth ------------------------------------


def _child(args: list[str], timeout: float = 600.0) -> Any:
    """Run ``child.py`` with ``args`` and return the JSON it prints."""
    done = subprocess.run([sys.executable, os.path.join(HERE, "child.py"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=HERE)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip()
                           else f"exit status {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_memory(profile: Profile) -> dict[str, Any]:
    rows, missing = [], {}
    traced = set(profile.traced)
    for kind, tasks in profile.memory:
        log(f"[memory] {kind} with {tasks:,} tasks queued")
        try:
            row = _child(["memory", kind, str(tasks)])
            if (kind, tasks) in traced:
                row["traced_bytes_per_task"] = _child(
                    ["memory", kind, str(tasks), "--trace"])["traced_bytes_per_task"]
        except Exception as exc:
            missing[f"{kind} {tasks}"] = f"failed: {type(exc).__name__}: {exc}"
            continue
        rows.append({"kind": kind, "tasks": tasks, **row})
    return {"rows": rows, "missing": missing}


def run_stream(profile: Profile) -> dict[str, Any]:
    """The master's RSS along a long stream, and a worker's along many distinct functions."""
    tasks, window, marks = profile.stream
    count, fn_marks = profile.functions
    out: dict[str, Any] = {"missing": {}}
    log(f"[long-stream] {tasks:,} null tasks, window {window:,}")
    try:
        out["stream"] = _child(["stream", str(tasks), str(window), *map(str, marks)],
                               timeout=1800)
    except Exception as exc:
        out["missing"]["stream"] = f"failed: {type(exc).__name__}: {exc}"
    log(f"[long-stream] {count:,} distinct functions through one worker")
    try:
        out["functions"] = _child(["functions", str(count), *map(str, fn_marks)], timeout=1800)
    except Exception as exc:
        out["missing"]["functions"] = f"failed: {type(exc).__name__}: {exc}"
    return out


def run_scaling(profile: Profile) -> dict[str, Any]:
    rows, missing = [], {}
    for tasks, repeats in profile.scaling:
        log(f"[scaling] {tasks:,} tasks x {repeats}")
        try:
            runs = _child(["scaling", str(tasks), str(repeats)])
        except Exception as exc:
            missing[str(tasks)] = f"failed: {type(exc).__name__}: {exc}"
            continue
        rows.append({"tasks": tasks, "runs": runs})
    return {"rows": rows, "missing": missing}


def run_workers(profile: Profile) -> dict[str, Any]:
    """Null tasks through 1 to 10,000 simulated workers, each repeat a fresh process per
    size, the sizes taking turns (who goes first rotates) as the local runners do."""
    counts, tasks, repeats = profile.workers
    runs: dict[int, list[dict[str, float]]] = {count: [] for count in counts}
    missing: dict[str, str] = {}
    for repeat in range(repeats):
        log(f"[workers] repeat {repeat + 1}/{repeats}: {tasks:,} null tasks at each size")
        shift = repeat % len(counts)
        for count in counts[shift:] + counts[:shift]:
            if str(count) in missing:
                continue
            try:
                runs[count] += _child(["workers", str(count), str(tasks), "1"])
            except Exception as exc:
                missing[str(count)] = f"failed: {type(exc).__name__}: {exc}"
    rows = [{"workers": count, "runs": runs[count]} for count in counts
            if runs[count] and str(count) not in missing]
    return {"tasks": tasks, "rows": rows, "missing": missing}


# -- other interfaces: their own bench modules, in a process of their own ------------------


def run_peer_bench(module: str, repeats: int, timeout: float, skip: str = "") -> dict[str, Any]:
    """``<module>.run(repeats)``, isolated: absent, failing or too slow means not measured."""
    if skip:
        return {"not_measured": skip}
    if not os.path.exists(os.path.join(HERE, module + ".py")):
        return {"not_measured": f"benchmarks/{module}.py is not in this checkout"}
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {HERE!r})\n"
        f"import {module}\n"
        f"answer = {module}.run({repeats})\n"
        "print('\\n@@RESULT@@' + json.dumps(answer, default=str))\n"
    )
    log(f"[{module}] run({repeats}), at most {timeout:.0f} s")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=os.path.dirname(HERE),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)  # its own session: the pool or sshd it started
        child.communicate()
        return {"not_measured": f"{module}.run did not finish within {timeout:.0f} s"}
    marker = [line for line in out.splitlines() if line.startswith("@@RESULT@@")]
    if child.returncode != 0 or not marker:
        last = (err.strip().splitlines() or [f"exit status {child.returncode}"])[-1]
        return {"not_measured": f"{module}.run failed: {last}"}
    answer = json.loads(marker[-1][len("@@RESULT@@"):])
    if not isinstance(answer, dict):
        return {"not_measured": f"{module}.run returned {type(answer).__name__}, not a dict"}
    if "skipped" in answer:
        return {"not_measured": f"{module}.run skipped it: {answer['skipped']}"}
    return {"result": answer}


# -- the command ----------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a smoke check in about 2 minutes")
    size.add_argument("--tiny", action="store_true", help="the test suite's seconds-long check")
    parser.add_argument("--only", default="",
                        help=f"comma-separated sections, of: {', '.join(SECTIONS)}")
    parser.add_argument("--out", default=os.path.join(HERE, "results"),
                        help="folder for the results (default: benchmarks/results)")
    parser.add_argument("--name", help="file stem (default: latest, quick or tiny; with "
                        "--only: partial, quick-partial or tiny-partial)")
    parser.add_argument("--plots", action=argparse.BooleanOptionalAction, default=None,
                        help="write PNG plots (default: for the full run only)")
    parser.add_argument("--from-json", metavar="PATH",
                        help="measure nothing: write the table, plots and docs of a saved run")
    args = parser.parse_args(argv)
    args.profile = TINY if args.tiny else QUICK if args.quick else FULL
    args.only = {s.strip() for s in args.only.split(",") if s.strip()} or set(SECTIONS)
    args.partial = args.only != set(SECTIONS)
    unknown = args.only - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; "
                     f"choose from {', '.join(SECTIONS)}")
    if args.name is None:
        # A partial run never overwrites the committed full results (latest.*).
        stem = "latest" if args.profile is FULL else args.profile.name
        args.name = ("partial" if args.profile is FULL else f"{stem}-partial") \
            if args.partial else stem
    if args.plots is None:
        args.plots = args.profile is FULL
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as fh:
            return publish(json.load(fh), args)
    profile: Profile = args.profile
    started = time.monotonic()
    meta = machine.describe()
    meta.update(command=machine.command(argv), profile=profile.name, workers=WORKERS,
                sections=sorted(args.only))
    raw: dict[str, Any] = {}

    def explicit(section: str) -> bool:
        return section in args.only and args.only != set(SECTIONS)

    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("local", lambda: run_local(profile, args.only)),
        ("ssh", lambda: run_peer_bench(
            "bench_ssh", profile.ssh_repeats, profile.peer_timeout,
            "" if profile.ssh_repeats else f"not run by the {profile.name} profile")),
        ("mpi", lambda: run_peer_bench(
            "bench_mpi", max(1, profile.mpi_repeats), profile.peer_timeout,
            "" if profile.mpi_repeats or explicit("mpi") else
            f"not run by the {profile.name} profile")),
        ("condor", lambda: run_peer_bench(
            "bench_condor", max(1, profile.condor_repeats), profile.peer_timeout,
            "" if profile.condor_repeats or explicit("condor") else
            f"not run by the {profile.name} profile (it starts an HTCondor pool); "
            "ask for it with --only condor")),
        ("joblib", lambda: run_peer_bench(
            "bench_joblib", max(1, profile.joblib_repeats), profile.peer_timeout,
            "" if profile.joblib_repeats or explicit("joblib") else
            f"not run by the {profile.name} profile; ask for it with --only joblib")),
        ("journal", lambda: run_peer_bench(
            "bench_journal", max(1, profile.repeats), profile.peer_timeout,
            "" if profile.name == "full" or explicit("journal") else
            f"not run by the {profile.name} profile; ask for it with --only journal")),
        # bench_slurm skips itself (not measured) where Slurm and munge are not installed.
        ("slurm", lambda: run_peer_bench(
            # raw sbatch and submitit take about 100 s each a repeat: more time per repeat
            "bench_slurm", max(1, profile.slurm_repeats),
            profile.peer_timeout + 250 * max(1, profile.slurm_repeats),
            "" if profile.slurm_repeats or explicit("slurm") else
            f"not run by the {profile.name} profile (it starts a Slurm cluster); "
            "ask for it with --only slurm")),
        ("local-memory", lambda: run_memory(profile)),
        ("master-scaling", lambda: run_scaling(profile)),
        ("master-workers", lambda: run_workers(profile)),
        ("long-stream", lambda: run_stream(profile)),
    ]
    for key, step in steps:
        wanted = args.only & set(LOCAL) if key == "local" else key in args.only
        if not wanted:
            continue
        raw[key] = step()
    meta["load_after"] = machine.load()
    meta["seconds"] = round(time.monotonic() - started, 1)
    return publish(report.build(meta, dataclasses.asdict(profile), raw), args)


def publish(results: dict[str, Any], args: argparse.Namespace) -> int:
    """Write the table, the numbers and the plots; a full run also refreshes the docs page.

    Only a complete run (every section, the full profile) refreshes docs/performance.md.
    """
    os.makedirs(args.out, exist_ok=True)
    measured = set(results.get("meta", {}).get("sections", SECTIONS))
    if args.plots:
        results["plots"] = report.plots(results, args.out, "" if args.name == "latest"
                                        else f"{args.name}-")
    paths = report.write(results, args.out, args.name)
    if (args.name == "latest" and measured >= set(SECTIONS)
            and results.get("profile", {}).get("name", "full") == "full"
            and os.path.abspath(args.out) == os.path.join(HERE, "results")):
        page = os.path.join(os.path.dirname(HERE), "docs", "performance.md")
        if report.update_docs(results, page):
            paths.append(page)
    log(f"wrote {', '.join(paths + results.get('plots', []))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
