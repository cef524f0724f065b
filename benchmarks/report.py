"""From raw repeats to the published answer: summaries, ratios, targets, Markdown, PNG.

A figure is the best of its repeats (highest rate, lowest time) with the spread of
the repeats, ``(worst - best) / best``; a ratio divides two best figures of the same
run. Nothing here measures anything.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from typing import Any

PYMW = "pymw local"
PPE = "ProcessPoolExecutor"
POOL = "multiprocessing.Pool"
PIPE = "raw pipe"
SERIAL = "serial (this process)"
ORDER = (PYMW, PPE, POOL, "loky", "process per task", PIPE, SERIAL)
MEMORY_LABELS = {
    "pymw-never": "pymw (an interface that never runs them)",
    "pymw-local-busy": "pymw local (workers busy)",
    "ppe-busy": "ProcessPoolExecutor (workers busy)",
    "pool-busy": "multiprocessing.Pool (workers busy)",
}
KB = 1024
TIMES = "\u00d7"  # the multiplication sign of ratios
NONE = "\u2013"  # an en dash: not measured
FLAT = 1.5  # largest / smallest µs per task across sizes that still counts as flat


def summarize(values: list[float], higher_is_better: bool) -> dict[str, Any]:
    """Best, worst and spread (percent of the best) of one figure's repeats."""
    best = max(values) if higher_is_better else min(values)
    worst = min(values) if higher_is_better else max(values)
    return {
        "best": best,
        "worst": worst,
        "spread_pct": abs(worst - best) / best * 100 if best else 0.0,
        "repeats": len(values),
        "values": values,
    }


def _ordered(names: Any) -> list[str]:
    return sorted(names, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))


def _ratio(top: float | None, bottom: float | None) -> float | None:
    if top is None or not bottom:
        return None
    return top / bottom


# -- building the results -----------------------------------------------------------------


def build(meta: dict[str, Any], profile: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """Every section summarised, the named ratios, and the targets of issue 6 judged."""
    sections: dict[str, Any] = {}
    ratios: dict[str, float] = {}
    local = raw.get("local")
    if local:
        values, missing = local["values"], local["missing"]
        for name, builder in (("local-throughput", _throughput), ("local-latency", _latency),
                              ("local-payload", _payload), ("local-cpu", _cpu)):
            if name in values:
                sections[name] = builder(values[name], missing, ratios)
                if name == "local-cpu":
                    sections[name]["spin_loops"] = local["spin_loops"]
    if "local-memory" in raw:
        sections["local-memory"] = _memory(raw["local-memory"])
    if "master-scaling" in raw:
        sections["master-scaling"] = _scaling(raw["master-scaling"], ratios)
    if "master-workers" in raw:
        sections["master-workers"] = _workers(raw["master-workers"], ratios)
    if "long-stream" in raw:
        sections["long-stream"] = _stream(raw["long-stream"], ratios)
    for name in ("ssh", "mpi", "condor", "slurm", "joblib", "journal"):
        if name in raw:
            sections[name] = raw[name]
            _collect_ratios(name, raw[name].get("result"), ratios)
    ratios = {k: v for k, v in ratios.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    return {"meta": meta, "profile": profile, "sections": sections, "ratios": ratios,
            "targets": _targets(sections, ratios)}


def _rows(values: dict[str, list], higher: bool, key: str | None = None) -> list[dict]:
    rows = []
    for name in _ordered(values):
        series = [v[key] for v in values[name]] if key else values[name]
        rows.append({"runner": name, **summarize(series, higher)})
    return rows


def _best(rows: list[dict], name: str) -> float | None:
    return next((r["best"] for r in rows if r["runner"] == name), None)


def _throughput(values: dict, missing: dict, ratios: dict) -> dict:
    rows = _rows(values, higher=True)
    for row in rows:
        row["vs_ppe"] = _ratio(row["best"], _best(rows, PPE))
        row["vs_pool"] = _ratio(row["best"], _best(rows, POOL))
    for peer in _ordered(values):
        if peer != PYMW:
            ratios[f"throughput: {PYMW} / {peer}"] = _ratio(_best(rows, PYMW), _best(rows, peer))
    return {"rows": rows, "missing": missing, "unit": "tasks/s"}


def _latency(values: dict, missing: dict, ratios: dict) -> dict:
    medians = _rows(values, higher=False, key="median_us")
    p99s = {r["runner"]: r for r in _rows(values, higher=False, key="p99_us")}
    rows = []
    for row in medians:
        rows.append({
            "runner": row["runner"], "median": row, "p99": p99s[row["runner"]],
            "vs_ppe": _ratio(row["best"], _best(medians, PPE)),
            "vs_pipe": _ratio(row["best"], _best(medians, PIPE)),
        })
    for peer in _ordered(values):
        if peer != PYMW:
            ratios[f"latency median: {PYMW} / {peer}"] = _ratio(_best(medians, PYMW),
                                                                 _best(medians, peer))
    return {"rows": rows, "missing": missing, "unit": "µs"}


def _payload(values: dict, missing: dict, ratios: dict) -> dict:
    rows = _rows(values, higher=True)
    for row in rows:
        row["vs_pipe"] = _ratio(row["best"], _best(rows, PIPE))
    for peer in _ordered(values):
        if peer != PYMW:
            ratios[f"1 MB payload: {PYMW} / {peer}"] = _ratio(_best(rows, PYMW), _best(rows, peer))
    return {"rows": rows, "missing": missing, "unit": "MB/s"}


def _cpu(values: dict, missing: dict, ratios: dict) -> dict:
    rows = _rows(values, higher=False)
    serial = _best(rows, SERIAL)
    for row in rows:
        row["speedup"] = _ratio(serial, row["best"])
        if row["runner"] != SERIAL:
            ratios[f"CPU-bound speed-up: {row['runner']}"] = row["speedup"]
    return {"rows": rows, "missing": missing, "unit": "s"}


def _memory(raw: dict) -> dict:
    rows = [dict(r, label=MEMORY_LABELS.get(r["kind"], r["kind"])) for r in raw["rows"]]
    return {"rows": rows, "missing": raw["missing"], "unit": "bytes/task"}


def _scaling(raw: dict, ratios: dict) -> dict:
    rows = []
    for entry in raw["rows"]:
        rows.append({
            "tasks": entry["tasks"],
            "total": summarize([r["total_us"] for r in entry["runs"]], higher_is_better=False),
            "submit": summarize([r["submit_us"] for r in entry["runs"]], higher_is_better=False),
        })
    if rows:
        first = rows[0]["total"]["best"]
        for row in rows:
            row["vs_first"] = _ratio(row["total"]["best"], first)
        bests = [r["total"]["best"] for r in rows]
        ratios["master µs/task: largest / smallest size"] = _ratio(bests[-1], bests[0])
        ratios["master µs/task: most / least across sizes"] = _ratio(max(bests), min(bests))
    return {"rows": rows, "missing": raw["missing"], "unit": "µs/task"}


def _workers(raw: dict, ratios: dict) -> dict:
    """Per size: tasks/s and CPU µs per task; flat means the most / least of the sizes'
    median CPU from 10 up. Medians, not bests: a size's CPU per task is bimodal (a run
    now and then takes half the CPU of the others, at any size), so the best of a few
    repeats at one size against another's compares luck, not the cost of more workers."""
    rows = []
    for entry in raw["rows"]:
        cpu = [r["cpu_us"] for r in entry["runs"]]
        rows.append({
            "workers": entry["workers"],
            "rate": summarize([r["tasks_per_s"] for r in entry["runs"]], higher_is_better=True),
            "cpu": summarize(cpu, higher_is_better=False),
            "cpu_median": statistics.median(cpu),
        })
    many = [r["cpu_median"] for r in rows if r["workers"] >= 10]
    if len(many) >= 2:
        ratios["master CPU µs/task with 10+ simulated workers: most / least median"] = _ratio(
            max(many), min(many))
    return {"rows": rows, "tasks": raw["tasks"], "missing": raw["missing"],
            "unit": "tasks/s, CPU µs/task"}


def _stream(raw: dict, ratios: dict) -> dict:
    """RSS along the stream; the growth from the first mark to the last is the ratio."""
    marks = raw.get("stream", {}).get("marks", [])
    if len(marks) >= 2:
        ratios["long stream: master RSS, last / first mark"] = _ratio(marks[-1]["rss_mb"],
                                                                      marks[0]["rss_mb"])
    fn_marks = raw.get("functions", {}).get("marks", [])
    if len(fn_marks) >= 2:
        ratios["distinct functions: worker RSS, last / first mark"] = _ratio(
            fn_marks[-1]["worker_rss_mb"], fn_marks[0]["worker_rss_mb"])
    return dict(raw)


def _is_ratio(name: str) -> bool:
    lowered = name.lower()
    return "ratio" in lowered or " / " in name or "_over_" in lowered or "_vs_" in lowered


def _collect_ratios(prefix: str, result: Any, ratios: dict, path: str = "") -> None:
    """Numbers an interface's own bench module calls ratios join the run's ratios."""
    if not isinstance(result, dict):
        return
    for key, value in result.items():
        name = f"{path}{key}"
        if isinstance(value, dict):
            _collect_ratios(prefix, value, ratios, f"{name}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and _is_ratio(name):
            ratios[f"{prefix}: {name}"] = float(value)
    for row in result.get("rows", ()) if not path else ():
        if isinstance(row, dict) and isinstance(row.get("measure"), str):
            for key, value in row.items():
                if isinstance(value, (int, float)) and _is_ratio(key):
                    ratios[f"{prefix}: {row['measure'].strip()} ({key})"] = float(value)


def _targets(sections: dict, ratios: dict) -> list[dict]:
    targets = []

    def judge(what: str, value: float | None, met: bool | None, shown: str) -> None:
        targets.append({"target": what, "value": value, "met": met, "measured": shown})

    def ratio_target(what: str, key: str, good: Any, unit: str = TIMES) -> None:
        value = ratios.get(key)
        judge(what, value, None if value is None else bool(good(value)),
              "not measured" if value is None else f"{value:.2f}{unit}")

    ratio_target("null-task throughput ≥ ProcessPoolExecutor's",
                 f"throughput: {PYMW} / {PPE}", lambda v: v >= 1)
    ratio_target("null-task throughput ≥ multiprocessing.Pool's (aim)",
                 f"throughput: {PYMW} / {POOL}", lambda v: v >= 1)
    ratio_target("round trip (median) ≤ ProcessPoolExecutor's",
                 f"latency median: {PYMW} / {PPE}", lambda v: v <= 1)
    ratio_target(f"round trip (median) within 3{TIMES} a raw pipe's",
                 f"latency median: {PYMW} / {PIPE}", lambda v: v <= 3)
    ratio_target("1 MB payloads at ≥ 90% of a raw pipe's bandwidth",
                 f"1 MB payload: {PYMW} / {PIPE}", lambda v: v >= 0.9)
    for row in sections.get("local-memory", {}).get("rows", []):
        if row["kind"] == "pymw-never":
            value = row["rss_bytes_per_task"]
            judge(f"master memory ≤ 1 KB per queued task ({row['tasks']:,} queued)", value,
                  value <= KB, f"{value:,.0f} bytes/task")
    ratio_target(f"flat master cost per task (most / least µs across sizes ≤ {FLAT})",
                 "master µs/task: most / least across sizes", lambda v: v <= FLAT)
    ratio_target(f"flat master CPU per task from 10 to 10,000 workers (most / least median "
                 f"≤ {FLAT})", "master CPU µs/task with 10+ simulated workers: most / least "
                 "median",
                 lambda v: v <= FLAT)
    ratio_target(f"null-task throughput ≥ 1.3{TIMES} multiprocessing.Pool's (aim, issue 26)",
                 f"throughput: {PYMW} / {POOL}", lambda v: v >= 1.3)
    speedups = {k.split(": ", 1)[1]: v for k, v in ratios.items()
                if k.startswith("CPU-bound speed-up: ")}
    pools = [v for k, v in speedups.items() if k in (PPE, POOL, "loky")]
    if PYMW in speedups and pools:
        value = speedups[PYMW] / max(pools)
        judge("CPU-bound speed-up within 5% of the best pool's (aim)", value, value >= 0.95,
              f"{value:.2f}{TIMES}")
    ratio_target("mpi round trip (median) ≤ MPIPoolExecutor's (aim)",
                 "mpi: round trip mpi / MPIPoolExecutor", lambda v: v <= 1)
    ratio_target("ssh null-task throughput ≥ execnet's (aim)",
                 "ssh: throughput ssh / execnet", lambda v: v >= 1)
    ratio_target("local throughput with a journal ≥ 0.85x without (aim)",
                 "journal: throughput_ratio", lambda v: v >= 0.85)
    ratio_target("joblib short calls: pymw backend ≥ loky's throughput (aim)",
                 "joblib: short calls/s pymw / loky", lambda v: v >= 1)
    ratio_target("joblib by name, a new Parallel per call: pymw ≥ loky's throughput (aim)",
                 "joblib: by name calls/s pymw / loky", lambda v: v >= 1)
    for peer in ("raw", "submitit", "dask-jobqueue"):
        ratio_target(f"slurm, 100 short tasks end to end: pymw faster than {peer} (keep)",
                     f"slurm: ratios.e2e_100_{peer}_over_pymw", lambda v: v > 1,
                     f"{TIMES} pymw's time")
    return targets


# -- Markdown -----------------------------------------------------------------------------


def num(value: float | None, digits: int = 3) -> str:
    """A human number: three significant digits, thousands separated, or a dash."""
    if value is None:
        return NONE
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


def spread(summary: dict) -> str:
    return f"±{summary['spread_pct']:.0f}% ({summary['repeats']})"


def times(value: float | None) -> str:
    return NONE if value is None else f"{value:.2f}{TIMES}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def markdown(results: dict) -> str:
    meta, profile, sections = results["meta"], results["profile"], results["sections"]
    out = [
        "# PyMW benchmarks: the latest run",
        "",
        f"Measured {meta['date']} with `{meta['command']}` (profile `{meta['profile']}`, "
        f"{meta['workers']} workers per pool, {meta['seconds']:.0f} s in all). Figures are "
        "the best of the repeats; `±` is the spread of the repeats, `(worst - best) / best`, "
        "with the number of repeats in brackets; ratios divide two best figures of this run.",
        "",
        f"- Machine: {meta['cpu']}, {meta['cpus']} CPUs ({meta['cpus_usable']} usable), "
        f"{meta['memory_gib']} GiB; {meta['system']}",
        f"- Python: {meta['python']}, multiprocessing start method `{meta['start_method']}`",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in meta["packages"].items()),
        f"- Code: commit {meta['commit']}",
        f"- Load average (1/5/15 min) before: {meta['load_before']}; after: {meta['load_after']}",
        "",
    ]
    if results["targets"]:
        out += ["## Targets", ""]
        out += table(["target", "measured", "met"], [
            [t["target"], t["measured"],
             NONE if t["met"] is None else "yes" if t["met"] else "**no**"]
            for t in results["targets"]
        ])
    if "local-throughput" in sections:
        section = sections["local-throughput"]
        out += [
            "## Null-task throughput", "",
            f"Submit {profile['tasks']:,} tasks that do nothing, then collect every result "
            f"({profile['per_task_tasks']:,} for the process-per-task runner).", "",
        ]
        out += table(["runner", "tasks/s", "spread", "÷ ProcessPoolExecutor",
                      "÷ multiprocessing.Pool"], [
            [r["runner"], num(r["best"]), spread(r), times(r["vs_ppe"]), times(r["vs_pool"])]
            for r in section["rows"]
        ]) + _missing(section)
    if "local-latency" in sections:
        section = sections["local-latency"]
        out += [
            "## Round trip of one task", "",
            f"Submit one null task and wait for its result, {profile['trips']:,} times in a "
            f"row ({profile['per_task_trips']} for the process-per-task runner); the raw pipe "
            "sends a 64-byte frame to a child process that sends it back.", "",
        ]
        out += table(["runner", "median µs", "spread", "p99 µs", "spread",
                      "median ÷ ProcessPoolExecutor's", "median ÷ raw pipe's"], [
            [r["runner"], num(r["median"]["best"]), spread(r["median"]), num(r["p99"]["best"]),
             spread(r["p99"]), times(r["vs_ppe"]), times(r["vs_pipe"])]
            for r in section["rows"]
        ]) + _missing(section)
    if "local-payload" in sections:
        section = sections["local-payload"]
        out += [
            "## 1 MB payloads", "",
            f"{profile['payload_tasks']} tasks (process per task: "
            f"{profile['per_task_payload_tasks']}) that each receive 1 MB (10⁶ bytes) and "
            "return it; MB/s counts both directions. The raw pipe echoes the same 1 MB frames "
            "through a bare `os.pipe` pair, one at a time.", "",
        ]
        out += table(["runner", "MB/s", "spread", "÷ raw pipe"], [
            [r["runner"], num(r["best"]), spread(r), times(r["vs_pipe"])]
            for r in section["rows"]
        ]) + _missing(section)
    if "local-cpu" in sections:
        section = sections["local-cpu"]
        out += [
            "## CPU-bound speed-up", "",
            f"{profile['cpu_tasks']} pure-Python tasks of about {profile['cpu_seconds']} s "
            f"each ({section['spin_loops']:,} loops) on {meta['workers']} workers, against "
            "the same tasks one after another in the benchmark's own process "
            f"(ideal speed-up: {meta['workers']}).", "",
        ]
        out += table(["runner", "seconds", "spread", "speed-up"], [
            [r["runner"], num(r["best"]), spread(r), times(r["speedup"])]
            for r in section["rows"]
        ]) + _missing(section)
    if "local-memory" in sections:
        section = sections["local-memory"]
        out += [
            "## The master's memory per queued task", "",
            "Growth of the master process's resident memory (RSS) while tasks with one "
            "small integer argument are submitted and stay queued, because the interface "
            "never runs them or every worker is busy; tracemalloc counts the Python "
            "objects alone. Each line is a fresh process.", "",
        ]
        out += table(["master", "tasks queued", "bytes/task (RSS)", "bytes/task (tracemalloc)",
                      "µs per submit"], [
            [r["label"], f"{r['tasks']:,}", num(r["rss_bytes_per_task"]),
             num(r.get("traced_bytes_per_task")), num(r["submit_us"])]
            for r in section["rows"]
        ]) + _missing(section)
    if "master-scaling" in sections:
        section = sections["master-scaling"]
        out += [
            "## The master's cost as tasks grow", "",
            "An in-process interface completes each task the moment it is handed over "
            "(`task.task_finished(None, None)` in `execute_task`), so what is timed is the "
            "master alone: submit every task, then collect every result. Each size runs in "
            "a fresh process.", "",
        ]
        out += table(["tasks", "µs/task (submit to result)", "spread", "µs/task (submit only)",
                      "÷ smallest size"], [
            [f"{r['tasks']:,}", num(r["total"]["best"]), spread(r["total"]),
             num(r["submit"]["best"]), times(r["vs_first"])]
            for r in section["rows"]
        ]) + _missing(section)
    if "master-workers" in sections:
        section = sections["master-workers"]
        out += [
            "## The master's cost as workers grow", "",
            f"An in-process interface of N simulated workers (`benchmarks/child.py`'s "
            f"`Simulated`: the worker hooks over a dict of free workers, one thread that "
            f"finishes each task as it is handed over): {section['tasks']:,} null tasks "
            "submitted, every result collected. CPU is the whole process's (the master's "
            "threads and the one completer thread) per task. Each size is a fresh process; "
            "the sizes take turns inside each repeat.", "",
        ]
        out += table(["workers", "tasks/s", "spread", "CPU µs/task", "spread",
                      "CPU µs/task, median"], [
            [f"{r['workers']:,}", num(r["rate"]["best"]), spread(r["rate"]),
             num(r["cpu"]["best"]), spread(r["cpu"]),
             num(r.get("cpu_median", r["cpu"]["best"]))]
            for r in section["rows"]
        ]) + _missing(section)
    if "long-stream" in sections:
        section = sections["long-stream"]
        flow = section.get("stream")
        if flow:
            out += [
                "## A long stream: the master's memory stays flat", "",
                f"{flow['tasks']:,} null tasks through `as_completed`, at most "
                f"{2 * flow['window']:,} submitted and not yet handed out, on `local` with "
                f"2 workers: {flow['tasks_per_s']:,.0f} tasks/s. The master's RSS was "
                f"{flow['start_rss_mb']:.1f} MB before the stream.", "",
            ]
            out += table(["tasks handed out", "master RSS (MB)", "seconds"], [
                [f"{r['claimed']:,}", f"{r['rss_mb']:.1f}", f"{r['seconds']:.1f}"]
                for r in flow["marks"]
            ])
        fns = section.get("functions")
        if fns:
            out += [
                "", "## Many distinct functions: the worker's memory stays flat", "",
                f"{fns['functions']:,} distinct functions, one task each, through one "
                "`local` worker (its function cache keeps the most recent ones).", "",
            ]
            out += table(["functions", "worker RSS (MB)", "seconds"], [
                [f"{r['functions']:,}", f"{r['worker_rss_mb']:.1f}", f"{r['seconds']:.1f}"]
                for r in fns["marks"]
            ])
        out += ["", *_missing(section)]
    for name, title in (("ssh", "`ssh` over loopback against `local`"),
                        ("mpi", "`mpi` against mpi4py's `MPIPoolExecutor` and `local`"),
                        ("condor", "`condor` against raw `htcondor2`"),
                        ("slurm", "`slurm` against raw `sbatch --array`, submitit and "
                                  "dask-jobqueue"),
                        ("joblib", "joblib: the `pymw` backend on `local` against `loky`"),
                        ("journal", "The journal: `local` with and without one, its size, "
                                    "resuming")):
        if name in sections:
            out += [f"## {title}", "", *_peer(sections[name])]
    if results["ratios"]:
        out += ["## Every ratio of this run", ""]
        out += table(["ratio", "value"], [[k, f"{v:.3g}"] for k, v in results["ratios"].items()])
    return "\n".join(out).rstrip() + "\n"


def _missing(section: dict) -> list[str]:
    if not section.get("missing"):
        return []
    return [f"Not measured: {name}: {why}." for name, why in section["missing"].items()] + [""]


def _peer(section: dict) -> list[str]:
    if "not_measured" in section:
        return [f"Not measured: {section['not_measured']}", ""]
    result = section["result"]
    lines: list[str] = []
    rows = result.get("rows")
    if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        header = list(dict.fromkeys(k for r in rows for k in r))
        lines += table(header, [[_cell(r.get(k)) for k in header] for r in rows])
    flat: list[list[str]] = []
    _flatten(result, "", flat, skip={"rows", "samples", "samples_wall_s"})
    if flat:
        lines += table(["measure", "value"], flat)
    return lines


def _flatten(value: Any, path: str, out: list[list[str]], skip: set[str] = frozenset()) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not path and key in skip:
                continue
            _flatten(item, f"{path}{key}" if not path else f"{path}.{key}", out)
    else:
        out.append([path or "value", _cell(value)])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return num(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    return NONE if value is None else str(value).replace("|", "\\|").replace("\n", " ")


DOCS_BEGIN = "<!-- benchmarks/run.py writes from here -->"
DOCS_END = "<!-- to here -->"


def update_docs(results: dict, page: str) -> bool:
    """Put this run's tables between the markers of ``page``; False if it has none."""
    try:
        with open(page, encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return False
    if DOCS_BEGIN not in text or DOCS_END not in text:
        return False
    body = markdown(results).split("\n", 1)[1].strip()  # without the page's own title
    body = body.replace("\n## ", "\n### ")
    head, _, rest = text.partition(DOCS_BEGIN)
    _, _, tail = rest.partition(DOCS_END)
    with open(page, "w", encoding="utf-8") as fh:
        fh.write(f"{head}{DOCS_BEGIN}\n\n{body}\n\n{DOCS_END}{tail}")
    return True


def write(results: dict, folder: str, name: str) -> list[str]:
    """``<name>.md`` and ``<name>.json`` in ``folder``; returns their paths."""
    md = os.path.join(folder, f"{name}.md")
    data = os.path.join(folder, f"{name}.json")
    with open(md, "w", encoding="utf-8") as fh:
        fh.write(markdown(results))
    with open(data, "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=1, default=str)
        fh.write("\n")
    return [md, data]


# -- plots --------------------------------------------------------------------------------


def plots(results: dict, folder: str, prefix: str = "") -> list[str]:
    """One PNG per section measured; none (and a note) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        results["meta"]["plots"] = "not drawn: matplotlib is not installed"
        return []
    sections = results["sections"]
    written = []

    def save(fig: Any, stem: str) -> None:
        path = os.path.join(folder, f"{prefix}{stem}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    def bars(ax: Any, rows: list[dict], label: str, log: bool, key: Any = None) -> None:
        pick = key or (lambda r: r)
        names = [r["runner"] for r in rows]
        best = [pick(r)["best"] for r in rows]
        worst = [pick(r)["worst"] for r in rows]
        err = [[max(0.0, b - w) for b, w in zip(best, worst, strict=True)],
               [max(0.0, w - b) for b, w in zip(best, worst, strict=True)]]
        colors = ["tab:blue" if n == PYMW else "tab:gray" if n in (PIPE, SERIAL)
                  else "tab:orange" for n in names]
        ax.barh(names[::-1], best[::-1], xerr=[e[::-1] for e in err], color=colors[::-1],
                capsize=3)
        ax.set_xlabel(label)
        if log:
            ax.set_xscale("log")
        for index, value in enumerate(best[::-1]):
            ax.text(value, index, f" {num(value)}", va="center", fontsize=8)

    if "local-throughput" in sections:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        bars(ax, sections["local-throughput"]["rows"], "null tasks per second (log scale)", True)
        ax.set_title("Null-task throughput, 2 workers (best of repeats, bar = spread)")
        save(fig, "throughput")
    if "local-latency" in sections:
        rows = sections["local-latency"]["rows"]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
        bars(axes[0], rows, "median µs (log scale)", True, key=lambda r: r["median"])
        bars(axes[1], rows, "p99 µs (log scale)", True, key=lambda r: r["p99"])
        fig.suptitle("Round trip of one task")
        save(fig, "latency")
    if "local-payload" in sections:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        bars(ax, sections["local-payload"]["rows"], "MB/s, both directions", False)
        ax.set_title("1 MB arguments and results")
        save(fig, "payload")
    if "local-cpu" in sections:
        rows = [dict(r, speed={"best": r["speedup"] or 0.0, "worst": r["speedup"] or 0.0})
                for r in sections["local-cpu"]["rows"]]
        fig, ax = plt.subplots(figsize=(7, 3.2))
        bars(ax, rows, "speed-up over serial", False, key=lambda r: r["speed"])
        ax.axvline(results["meta"]["workers"], color="k", linestyle=":", linewidth=1)
        ax.set_title("CPU-bound tasks on 2 workers")
        save(fig, "speedup")
    if "local-memory" in sections and sections["local-memory"]["rows"]:
        rows = sections["local-memory"]["rows"]
        fig, ax = plt.subplots(figsize=(7, 3.2))
        labels = [f"{r['label']}, {r['tasks']:,}" for r in rows]
        ax.barh(labels[::-1], [r["rss_bytes_per_task"] for r in rows][::-1],
                color=["tab:blue" if r["kind"].startswith("pymw") else "tab:orange"
                       for r in rows][::-1])
        ax.axvline(KB, color="k", linestyle=":", linewidth=1)
        ax.set_xlabel("master RSS bytes per queued task (dotted: 1 KB target)")
        ax.tick_params(axis="y", labelsize=7)
        save(fig, "memory")
    if "master-scaling" in sections and sections["master-scaling"]["rows"]:
        rows = sections["master-scaling"]["rows"]
        fig, ax = plt.subplots(figsize=(6, 3.2))
        sizes = [r["tasks"] for r in rows]
        ax.plot(sizes, [r["total"]["best"] for r in rows], "o-", label="submit to result")
        ax.fill_between(sizes, [r["total"]["best"] for r in rows],
                        [r["total"]["worst"] for r in rows], alpha=0.2)
        ax.plot(sizes, [r["submit"]["best"] for r in rows], "s--", label="submit only")
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("tasks")
        ax.set_ylabel("µs per task")
        ax.set_title("The master's cost per task as tasks grow")
        ax.legend()
        save(fig, "scaling")
    if "master-workers" in sections and sections["master-workers"]["rows"]:
        rows = sections["master-workers"]["rows"]
        fig, ax = plt.subplots(figsize=(6, 3.2))
        sizes = [r["workers"] for r in rows]
        ax.plot(sizes, [r["cpu"]["best"] for r in rows], "o-", label="CPU µs per task")
        ax.fill_between(sizes, [r["cpu"]["best"] for r in rows],
                        [r["cpu"]["worst"] for r in rows], alpha=0.2)
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("simulated workers")
        ax.set_ylabel("CPU µs per task")
        ax.set_title("The master's cost per task as workers grow")
        ax.legend()
        save(fig, "workers")
    return written


def print_result(name: str, result: dict[str, Any]) -> None:
    """A bench module's ``run()`` answer on the terminal: its rows as a table, then the
    rest (ratios and settings), for running one module by hand."""
    if "skipped" in result:
        print(f"{name} skipped: {result['skipped']}")
        return
    header = list(result["rows"][0])
    widths = [max(len(h), *(len(str(r[h])) for r in result["rows"])) for h in header]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in result["rows"]:
        print("  ".join(str(row[h]).ljust(w) for h, w in zip(header, widths, strict=True)))
    print()
    for key, value in result.items():
        if key not in ("rows", "samples"):
            print(f"{key}: {value:.3g}" if isinstance(value, float) else f"{key}: {value}")
