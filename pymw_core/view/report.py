"""``pymw report run.db -o run.html``: one self-contained HTML page about a run.

Everything is inline (CSS and SVG drawn here; no script, no network), so the file
opens anywhere, mailed or copied off a cluster. The page's size does not grow with the
run: past ``MARK_LIMIT`` attempts the timeline is aggregated in SQL into time slices
per worker, the charts always are, and the tables are capped (the page says so).
"""

from __future__ import annotations

import html
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from pymw_core.view import reading
from pymw_core.view.reading import STATES, Run

MARK_LIMIT = 20_000   # attempts drawn one by one up to this many; slices beyond
BUCKETS = 300         # time slices of an aggregated timeline
CHART_BUCKETS = 100   # at most this many time slices in the throughput and workers charts
ROW_LIMIT = 300       # timeline rows; past this many workers, one row per host
TABLE_LIMIT = 200     # rows of the failure tables
TEXT_LIMIT = 8_000    # characters of a traceback or an output shown per failure
PALETTE = ("#4e79a7", "#59a14f", "#9c755f", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
           "#8cd17d", "#86bcb6", "#a0cbe8")
BAD = {"error": "#e15759", "lost": "#f28e2b", "timeout": "#bc5090", "cancelled": "#bab0ac"}


@dataclass
class Mark:
    """One attempt on the timeline."""

    row: int
    task: int
    number: int
    name: str
    started: float
    ended: float | None
    outcome: str | None
    begin: float = 0.0  # when the worker was free to run it (see _serialize)


@dataclass
class Data:
    """Everything the page shows, read from the journal in one read transaction."""

    path: str
    generated: float
    runs: list[Run]
    status: str
    t0: float
    t1: float
    counts: dict[str, int]
    outcomes: dict[str, int]
    attempts: int
    rows: list[tuple[str, str, int, int]]  # timeline rows: label, host, attempts, workers
    by_host: bool
    marks: list[Mark] | None                    # None: aggregated
    busy: list[list[float]]                      # [row][bucket]: busy seconds
    bad: list[list[int]]                         # [row][bucket]: attempts that ended badly
    ended_ok: list[int]                          # [bucket]: attempts ended ok
    ended_bad: list[int]                         # [bucket]: attempts ended otherwise
    functions: list[tuple[Any, ...]]
    names: list[str]
    failures: list[dict[str, Any]]
    troubles: list[dict[str, Any]]
    trouble_count: int
    chart_buckets: int = CHART_BUCKETS

    @property
    def width(self) -> float:
        """Seconds in one time slice of the timeline."""
        return (self.t1 - self.t0) / BUCKETS

    @property
    def chart_width(self) -> float:
        """Seconds in one time slice of the charts."""
        return (self.t1 - self.t0) / self.chart_buckets


def collect(conn: sqlite3.Connection, path: str, now: float | None = None) -> Data:
    """Read the report's data; every aggregate is computed by SQLite, not in Python."""
    now = time.time() if now is None else now
    with conn:
        conn.execute("BEGIN")
        runs = reading.runs(conn)
        last = runs[-1] if runs else None
        status = last.status(now) if last else "empty"
        counts = reading.counts(conn)
        # One scan of the attempts for their outcomes and the run's time span.
        outcomes: dict[str, int] = {}
        first_start = last_start = last_end = None
        for outcome, n, lo, hi, end in conn.execute(
                "SELECT outcome, count(*), min(started), max(started), max(ended)"
                " FROM attempts GROUP BY outcome"):
            outcomes[outcome or "running"] = n
            first_start = lo if first_start is None else min(first_start, lo)
            last_start = hi if last_start is None else max(last_start, hi)
            if end is not None:
                last_end = end if last_end is None else max(last_end, end)
        attempts = sum(outcomes.values())
        trouble_count = outcomes.get("lost", 0) + outcomes.get("timeout", 0)
        t0 = min([r.started for r in runs] + ([first_start] if first_start else [now]))
        ends = [r.last_seen() for r in runs] + [x for x in (last_start, last_end) if x]
        t1 = now if status == "running" else max([*ends, t0])
        if t1 - t0 < 1.0:
            t1 = t0 + 1.0
        cutoff = t1  # an attempt with no end is drawn up to here
        # Timeline rows: one per worker, or per host when the workers are too many to draw.
        rows = conn.execute(
            "SELECT coalesce(worker, '?'), coalesce(max(host), ''), count(*), 1"
            " FROM attempts GROUP BY 1").fetchall()
        by_host = len(rows) > ROW_LIMIT
        column = "host" if by_host else "worker"
        if by_host:
            rows = conn.execute(
                "SELECT coalesce(host, '?'), coalesce(max(host), ''), count(*),"
                " count(DISTINCT worker) FROM attempts GROUP BY 1").fetchall()
        rows.sort(key=lambda r: _natural(r[0]))
        index = {label: i for i, (label, *_) in enumerate(rows)}
        width = (t1 - t0) / BUCKETS
        busy = [[0.0] * BUCKETS for _ in rows]
        bad = [[0] * BUCKETS for _ in rows]
        for label, b, total, nbad in conn.execute(
                f"SELECT coalesce({column}, '?'), CAST((started - :t0) / :w AS INTEGER) AS b,"
                " sum(min(coalesce(ended, :cut), :cut) - started),"
                " sum(outcome IN ('error', 'lost', 'timeout'))"
                " FROM attempts GROUP BY 1, 2", {"t0": t0, "w": width, "cut": cutoff}):
            b = min(max(b, 0), BUCKETS - 1)
            busy[index[label]][b] += max(total or 0.0, 0.0)
            bad[index[label]][b] += nbad or 0
        # Busy seconds were summed into the slice where each attempt started; what exceeds
        # the slice spills into the next ones, which is exact for a worker that runs one
        # task at a time (a host's row holds as many as its workers).
        for line, (_, _, _, capacity) in zip(busy, rows, strict=True):
            room = width * max(capacity, 1)
            for b in range(BUCKETS):
                if line[b] > room:
                    if b + 1 < BUCKETS:
                        line[b + 1] += line[b] - room
                    line[b] = room
        # Enough attempts per slice for a readable line: a divisor of BUCKETS, 10 to 100.
        chart_buckets = max([n for n in (10, 12, 15, 20, 25, 30, 50, 60, 75, 100)
                             if n <= max(attempts // 4, 10)])
        ended_ok, ended_bad = [0] * chart_buckets, [0] * chart_buckets
        for b, ok, other in conn.execute(
                "SELECT CAST((ended - :t0) / :w AS INTEGER), sum(outcome = 'ok'),"
                " sum(outcome != 'ok') FROM attempts WHERE ended IS NOT NULL GROUP BY 1",
                {"t0": t0, "w": (t1 - t0) / chart_buckets}):
            b = min(max(b, 0), chart_buckets - 1)
            ended_ok[b] += ok or 0
            ended_bad[b] += other or 0
        functions = conn.execute(
            "SELECT t.name, count(*), sum(a.outcome = 'ok'), sum(a.outcome != 'ok'),"
            " sum(a.ended - a.started), avg(a.ended - a.started), max(a.ended - a.started)"
            " FROM attempts a JOIN tasks t ON t.id = a.task WHERE a.ended IS NOT NULL"
            " GROUP BY t.name ORDER BY 5 DESC").fetchall()
        names = [f[0] for f in functions]
        for (name,) in conn.execute("SELECT DISTINCT t.name FROM tasks t JOIN attempts a"
                                    " ON a.task = t.id WHERE t.state = 'running'"):
            if name not in names:
                names.append(name)
        marks = None
        if attempts <= MARK_LIMIT:
            marks = [Mark(index[label], *rest) for label, *rest in conn.execute(
                f"SELECT coalesce(a.{column}, '?'),"
                " a.task, a.number, t.name, a.started, a.ended, a.outcome"
                " FROM attempts a JOIN tasks t ON t.id = a.task ORDER BY a.started")]
            _serialize(marks, by_host)
            busy = _busy_from_marks(marks, len(rows), t0, width, cutoff)
        failures = [dict(zip(("task", "name", "attempts", "ended", "error", "traceback",
                              "stdout", "stderr", "worker", "host", "detail"), row, strict=True))
                    for row in conn.execute(
            "SELECT t.id, t.name, t.attempts, t.ended, r.error, r.traceback, r.stdout,"
            " r.stderr, a.worker, a.host, a.detail FROM tasks t"
            " LEFT JOIN results r ON r.task = t.id"
            " LEFT JOIN attempts a ON a.task = t.id AND a.number = t.attempts"
            " WHERE t.state = 'failed' ORDER BY t.ended, t.id LIMIT ?", (TABLE_LIMIT,))]
        troubles = [dict(zip(("task", "name", "number", "worker", "host", "started", "ended",
                              "outcome", "detail"), row, strict=True)) for row in conn.execute(
            "SELECT a.task, t.name, a.number, a.worker, a.host, a.started, a.ended,"
            " a.outcome, a.detail FROM attempts a JOIN tasks t ON t.id = a.task"
            " WHERE a.outcome IN ('lost', 'timeout') ORDER BY a.started LIMIT ?",
            (TABLE_LIMIT,))]
    return Data(path=path, generated=now, runs=runs, status=status, t0=t0, t1=t1,
                counts=counts, outcomes=outcomes, attempts=attempts, rows=rows,
                by_host=by_host, marks=marks, busy=busy, bad=bad, ended_ok=ended_ok,
                ended_bad=ended_bad, functions=functions, names=names, failures=failures,
                troubles=troubles, trouble_count=trouble_count, chart_buckets=chart_buckets)


def _serialize(marks: list[Mark], by_host: bool) -> None:
    """Set each mark's ``begin``: an attempt handed to a worker still busy with the
    previous one (local sends the next task ahead) waits there, so it begins where the
    previous one ends. Rows of hosts hold several workers: nothing to serialize."""
    free: dict[int, float] = {}
    for m in marks:  # in order of start
        end = m.ended if m.ended is not None else float("inf")
        m.begin = m.started
        if not by_host and free.get(m.row, m.started) > m.started:
            m.begin = min(free[m.row], end)
        free[m.row] = max(free.get(m.row, m.started), end)


def _busy_from_marks(marks: list[Mark], rows: int, t0: float, width: float,
                     cutoff: float) -> list[list[float]]:
    """Busy seconds per row and slice, exact, from the serialized marks."""
    busy = [[0.0] * BUCKETS for _ in range(rows)]
    for m in marks:
        begin, end = m.begin, min(m.ended if m.ended is not None else cutoff, cutoff)
        b = max(int((begin - t0) / width), 0)
        while b < BUCKETS and begin < end:
            edge = t0 + (b + 1) * width
            busy[m.row][b] += min(end, edge) - begin
            begin = edge
            b += 1
    return busy


def _natural(name: str) -> tuple:
    import re

    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name))


# -- drawing ----------------------------------------------------------------------------

E = html.escape
LEFT, PLOT_W = 185, 880  # label column and plot width of every chart, in px


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _secs(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1:
        return f"{s * 1000:.1f} ms"
    if s < 120:
        return f"{s:.2f} s"
    return _clock_span(s)


def _clock_span(s: float) -> str:
    h, rest = divmod(int(s), 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _nice_step(span: float, count: int = 8) -> float:
    raw = span / count
    for unit in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400,
                 21600, 43200, 86400):
        if unit >= raw:
            return float(unit)
    return 86400.0 * max(1, round(raw / 86400))


def _axis(d: Data, y: float) -> str:
    """Time ticks under a chart at height ``y``: seconds since the run's start."""
    span = d.t1 - d.t0
    step = _nice_step(span)
    out = [f'<line class="axis" x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{y}" y2="{y}"/>']
    t = 0.0
    while t <= span + 1e-9:
        x = LEFT + t / span * PLOT_W
        label = f"+{t:g} s" if span < 120 else f"+{_clock_span(t)}"
        out.append(f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{y}" y2="{y + 4}"/>'
                   f'<text class="tl" x="{x:.1f}" y="{y + 16}">{label}</text>')
        t += step
    return "".join(out)


def _colours(d: Data) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(d.names)}


def timeline(d: Data) -> str:
    """The task stream: one row per worker (or host), one bar per attempt or slice."""
    n = max(len(d.rows), 1)
    row_h = 22 if n <= 12 else 14 if n <= 40 else max(3, 600 // n)
    labels = row_h >= 10
    height = n * row_h + 30
    span = d.t1 - d.t0
    scale = PLOT_W / span
    colours = _colours(d)
    parts = [f'<svg id="timeline" class="chart" viewBox="0 0 {LEFT + PLOT_W + 10} {height}"'
             f' width="{LEFT + PLOT_W + 10}" height="{height}"'
             f' data-mode="{"marks" if d.marks is not None else "slices"}"'
             f' data-rows="{len(d.rows)}" data-marks="{len(d.marks or [])}">']
    for i, (label, host, count, _) in enumerate(d.rows):
        y = i * row_h
        if i % 2:
            parts.append(f'<rect class="band" x="{LEFT}" y="{y}" width="{PLOT_W}"'
                         f' height="{row_h}"/>')
        if labels:
            parts.append(f'<text class="rl" x="{LEFT - 6}" y="{y + row_h * 0.7:.1f}">'
                         f'<title>{E(label)} on {E(host)}: {count:,} attempts</title>'
                         f'{E(label[:30])}</text>')
    if d.marks is not None:
        for m in d.marks:
            end = m.ended if m.ended is not None else d.t1
            begin = min(m.begin, end)
            x = LEFT + (begin - d.t0) * scale
            w = max((end - begin) * scale, 0.6)
            fill = BAD.get(m.outcome or "", colours.get(m.name, PALETTE[0]))
            cls = "attempt" + (" open" if m.ended is None else "")
            waited = f" (after {_secs(begin - m.started)} queued on the worker)" \
                if begin > m.started else ""
            tip = (f"task {m.task} {m.name} attempt {m.number} · {d.rows[m.row][0]} · "
                   f"{_secs(end - begin)}{waited} · {m.outcome or 'no end recorded'}")
            parts.append(f'<rect class="{cls}" data-task="{m.task}"'
                         f' data-outcome="{m.outcome or ""}" x="{x:.2f}"'
                         f' y="{m.row * row_h + 2}" width="{w:.2f}" height="{row_h - 4}"'
                         f' fill="{fill}"><title>{E(tip)}</title></rect>')
    else:
        w = PLOT_W / BUCKETS
        for i, line in enumerate(d.busy):
            for b, secs in enumerate(line):
                if secs <= 0:
                    continue
                share = min(secs / (d.width * max(d.rows[i][3], 1)), 1.0)
                x = LEFT + b * w
                tip = (f"{d.rows[i][0]} {_secs(b * d.width)}-{_secs((b + 1) * d.width)}: "
                       f"busy {share:.0%}")
                parts.append(f'<rect class="slice" x="{x:.2f}" y="{i * row_h + 1}"'
                             f' width="{w + 0.3:.2f}" height="{row_h - 2}"'
                             f' fill-opacity="{0.15 + 0.85 * share:.2f}"><title>{E(tip)}'
                             f'</title></rect>')
                if d.bad[i][b]:
                    parts.append(f'<rect class="badslice" x="{x:.2f}" y="{i * row_h + 1}"'
                                 f' width="{max(w, 1.5):.2f}" height="{max(row_h / 3, 1):.1f}">'
                                 f'<title>{d.bad[i][b]} attempts ended badly</title></rect>')
    if len(d.runs) > 1:  # where each master took over the journal
        for r in d.runs:
            x = LEFT + (r.started - d.t0) * scale
            parts.append(f'<line class="runline" x1="{x:.1f}" x2="{x:.1f}" y1="0"'
                         f' y2="{n * row_h}"><title>run {r.id} started {_when(r.started)}'
                         f'</title></line><text class="runlabel" x="{x + 3:.1f}"'
                         f' y="{n * row_h - 3}">run {r.id}</text>')
    parts.append(_axis(d, n * row_h + 4))
    parts.append("</svg>")
    return "".join(parts)


def _series_chart(d: Data, cid: str, series: list[tuple[str, str, list[float]]],
                  unit: str, height: int = 150, step: bool = False) -> str:
    top = max([max(v) for _, _, v in series if v] + [0.0]) or 1.0
    h = height - 30
    w = PLOT_W / d.chart_buckets
    parts = [f'<svg id="{cid}" class="chart" viewBox="0 0 {LEFT + PLOT_W + 10} {height}"'
             f' width="{LEFT + PLOT_W + 10}" height="{height}">']
    for frac in (0.0, 0.5, 1.0):
        y = 5 + h * (1 - frac)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{y:.1f}"'
                     f' y2="{y:.1f}"/><text class="rl" x="{LEFT - 6}" y="{y + 4:.1f}">'
                     f'{_num(top * frac)} {unit if frac == 1.0 else ""}</text>')
    for label, colour, values in series:
        points = []
        for b, v in enumerate(values):
            y = 5 + h * (1 - v / top)
            if step:
                points += [f"{LEFT + b * w:.1f},{y:.1f}", f"{LEFT + (b + 1) * w:.1f},{y:.1f}"]
            else:
                points.append(f"{LEFT + (b + 0.5) * w:.1f},{y:.1f}")
        if not step and points:  # a light area under the line: the eye reads volume
            base = f"{5 + h:.1f}"
            area = [f"{points[0].split(',')[0]},{base}", *points,
                    f"{points[-1].split(',')[0]},{base}"]
            parts.append(f'<polygon fill="{colour}" fill-opacity="0.12"'
                         f' points="{" ".join(area)}"/>')
        parts.append(f'<polyline class="series" stroke="{colour}" points="{" ".join(points)}">'
                     f'<title>{E(label)}</title></polyline>')
    parts.append(_axis(d, 5 + h))
    parts.append("</svg>")
    legend = " ".join(f'<span class="key"><i style="background:{c}"></i>{E(lab)}</span>'
                      for lab, c, _ in series)
    return f'<div class="legend">{legend}</div>' + "".join(parts)


def _num(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}".rstrip("0").rstrip(".") if v else "0"


def throughput(d: Data) -> str:
    per = d.chart_width
    ok = [n / per for n in d.ended_ok]
    other = [n / per for n in d.ended_bad]
    series = [("attempts ended ok per second", "#4e79a7", ok)]
    if any(other):
        series.append(("attempts ended otherwise (error, lost, timeout, cancelled) per second",
                       "#e15759", other))
    return _series_chart(d, "throughput", series, "/s")


def workers_chart(d: Data) -> str:
    n = d.chart_buckets
    k = BUCKETS // n
    coarse = [[sum(line[b * k:(b + 1) * k]) for b in range(n)] for line in d.busy]
    active = [float(sum(1 for line in coarse if line[b] > 0)) for b in range(n)]
    mean = [sum(line[b] for line in coarse) / d.chart_width for b in range(n)]
    noun = "hosts" if d.by_host else "workers"
    return _series_chart(d, "workers", [
        (f"{noun} with work in the slice", "#59a14f", active),
        ("tasks running on average (busy time / slice)", "#9c755f", mean)],
        "", height=130, step=True)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
 margin:0;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:18px 24px 60px}
h1{font-size:22px;margin:6px 0 2px}h2{font-size:17px;margin:28px 0 8px;
 border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666}.note{color:#555;background:#fff8e1;border-left:3px solid #f0c040;
 padding:6px 10px;margin:8px 0;font-size:13px}
.badge{display:inline-block;padding:1px 9px;border-radius:10px;color:#fff;font-weight:600;
 font-size:13px;vertical-align:middle}
.badge.ended{background:#3a8d4f}.badge.running{background:#2a7ab0}
.badge.gone{background:#c0392b}.badge.empty{background:#888}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{background:#fff;border:1px solid #e2e4e8;border-radius:6px;padding:8px 14px;
 min-width:96px}.card b{display:block;font-size:20px}.card span{color:#666;font-size:12px}
.card.failed b{color:#c0392b}.card.finished b{color:#3a8d4f}.card.running b{color:#2a7ab0}
table{border-collapse:collapse;background:#fff;width:100%;font-size:13px}
th,td{border:1px solid #e2e4e8;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef0f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{margin:4px 0;white-space:pre-wrap;font:12px/1.35 ui-monospace,Menlo,Consolas,monospace;
 background:#fafafa;border:1px solid #eee;padding:6px;max-height:320px;overflow:auto}
details summary{cursor:pointer;color:#2a5d8f}
.chart{display:block;background:#fff;border:1px solid #e2e4e8;border-radius:4px;
 max-width:100%;height:auto}
.chart text{font:11px system-ui,sans-serif;fill:#555}.chart .rl{text-anchor:end}
.chart .tl{text-anchor:middle}.axis,.tick{stroke:#999}.grid{stroke:#eee}
.band{fill:#f4f5f7}.slice{fill:#4e79a7;shape-rendering:crispEdges}.badslice{fill:#e15759}
.attempt.open{stroke:#222;stroke-dasharray:2 2}
.series{fill:none;stroke-width:1.6}
.runline{stroke:#333;stroke-dasharray:4 3}.chart .runlabel{fill:#333;font-weight:600}
.legend{margin:4px 0;font-size:12px;color:#444}
.key{margin-right:14px;white-space:nowrap}
.key i{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:4px;
 vertical-align:-1px}
code{font:12px ui-monospace,Menlo,Consolas,monospace}
"""


def page(d: Data) -> str:
    """The whole HTML document."""
    last = d.runs[-1] if d.runs else None
    program = (last.program if last else "") or "(unknown program)"
    status = {"ended": ("ended", "ended"), "running": ("running", "running at report time"),
              "master gone": ("gone", "master gone"), "empty": ("empty", "no run")}[d.status]
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
           f'<title>PyMW run: {E(os.path.basename(program))}</title>'
           f'<meta name="viewport" content="width=device-width"><style>{CSS}</style></head>'
           '<body><main>']
    out.append(f'<h1>PyMW run: {E(os.path.basename(program))} '
               f'<span id="status" class="badge {status[0]}">{status[1]}</span></h1>')
    out.append(f'<div class="sub">journal <code>{E(os.path.abspath(d.path))}</code> · '
               f'{_when(d.t0)} to {_when(d.t1)} ({_secs(d.t1 - d.t0)}) · '
               f'{len(d.runs)} run{"s" if len(d.runs) != 1 else ""} · report made '
               f'{_when(d.generated)}</div>')
    if d.status == "master gone" and last:
        out.append(f'<div class="note">The master stopped writing at {_when(last.last_seen())}'
                   ' without ending the run (killed, or its host went down). Attempts with no'
                   ' recorded end are drawn up to then with a dashed outline; starting the'
                   ' same program again with this journal resumes the run.</div>')
    elif d.status == "running":
        out.append('<div class="note">The run was still going when this page was made: it'
                   ' shows the journal as it was then. Make the report again for later'
                   ' numbers.</div>')
    # counts
    c = d.counts
    done_time = sum(f[4] or 0.0 for f in d.functions)
    out.append('<h2>Tasks</h2><div class="cards" id="counts">')
    out.append(f'<div class="card" data-state="total"><b>{c["total"]:,}</b>'
               '<span>tasks</span></div>')
    for state in STATES:
        out.append(f'<div class="card {state}" data-state="{state}"><b>{c[state]:,}</b>'
                   f'<span>{state}</span></div>')
    span = d.t1 - d.t0
    ended_n = sum(d.ended_ok) + sum(d.ended_bad)
    out.append(f'<div class="card"><b>{_num(ended_n / span)}/s</b>'
               '<span>attempts ended, overall</span></div>')
    out.append(f'<div class="card"><b>{len(d.rows):,}</b><span>'
               f'{"hosts" if d.by_host else "workers"}</span></div>')
    out.append(f'<div class="card"><b>{_secs(done_time)}</b><span>time in attempts</span></div>')
    out.append("</div>")
    outcome_text = ", ".join(f"{k} {v:,}" for k, v in sorted(d.outcomes.items()))
    out.append(f'<div class="sub" id="outcomes">{d.attempts:,} attempts: '
               f'{E(outcome_text) or "none"}</div>')
    # timeline
    out.append('<h2>Timeline of attempts (task stream)</h2>')
    colours = _colours(d)
    if d.marks is not None:
        keys = [f'<span class="key"><i style="background:{colours[n]}"></i>{E(n)}</span>'
                for n in d.names[:12]]
        keys += [f'<span class="key"><i style="background:{BAD[k]}"></i>{k}</span>'
                 for k in ("error", "lost", "timeout")]
        out.append(f'<div class="legend">{"".join(keys)} · one bar per attempt, from when'
                   ' the worker was free to run it; hover for the task and its times</div>')
    else:
        out.append(f'<div class="note" id="aggregated">{d.attempts:,} attempts are too many'
                   f' to draw one by one (the limit is {MARK_LIMIT:,}), so the journal was'
                   f' aggregated in SQL: each {"host" if d.by_host else "worker"}\'s row is cut'
                   f' into {BUCKETS} slices of {_secs(d.width)}; the darker a slice, the more'
                   ' of it the worker spent running tasks; a red mark on top means attempts'
                   ' ended badly in that slice.</div>')
    if d.by_host:
        out.append(f'<div class="note">More than {ROW_LIMIT} workers: one row per host.</div>')
    out.append(timeline(d))
    # over time
    out.append(f'<h2>Throughput and workers over time</h2><div class="sub">Per slice of'
               f' {_secs(d.chart_width)} ({d.chart_buckets} slices, counted in SQL).</div>')
    out.append(throughput(d))
    out.append(workers_chart(d))
    # functions
    out.append('<h2>Time per function</h2><table id="functions"><tr><th>function</th>'
               '<th>attempts</th><th>ok</th><th>not ok</th><th>total</th><th>mean</th>'
               '<th>max</th></tr>')
    for name, n, ok, bad, total, mean, most in d.functions:
        out.append(f'<tr><td><i class="sw" style="background:{colours.get(name, "#999")}">'
                   f'</i><code>{E(name)}</code></td><td class="n">{n:,}</td>'
                   f'<td class="n">{ok or 0:,}</td><td class="n">{bad or 0:,}</td>'
                   f'<td class="n">{_secs(total)}</td><td class="n">{_secs(mean)}</td>'
                   f'<td class="n">{_secs(most)}</td></tr>')
    if not d.functions:
        out.append('<tr><td colspan="7">no attempt has ended yet</td></tr>')
    out.append('</table><div class="sub">Attempts that ended, grouped by the task\'s function'
               ' (or script). An attempt\'s time runs from when the master handed it to a'
               ' worker to its end: an interface that hands a worker its next task before the'
               ' current one ends (local does) counts that wait in it too.</div>')
    # failures
    out.append(f'<h2>Failures</h2><div class="sub" id="failed-note">{c["failed"]:,} task'
               f'{"s" if c["failed"] != 1 else ""} failed for good (a task that raised is'
               ' never run again).')
    if c["failed"] > len(d.failures):
        out.append(f' The first {len(d.failures):,} are shown.')
    out.append('</div><table id="failures"><tr><th>task</th><th>function</th><th>when</th>'
               '<th>worker</th><th>error</th></tr>')
    for f in d.failures:
        error = f["error"] or f["detail"] or "(no error recorded)"
        more = []
        for label, key in (("traceback", "traceback"), ("stdout", "stdout"),
                           ("stderr", "stderr")):
            text = f[key] or ""
            if text:
                cut = (f"\n... ({len(text) - TEXT_LIMIT:,} more characters in the journal)"
                       if len(text) > TEXT_LIMIT else "")
                more.append(f'<details class="{label}"><summary>{label}</summary>'
                            f'<pre>{E(text[:TEXT_LIMIT])}{E(cut)}</pre></details>')
        out.append(f'<tr class="failure" data-task="{f["task"]}"><td class="n">{f["task"]}'
                   f'</td><td><code>{E(f["name"])}</code><br><span class="sub">'
                   f'{f["attempts"]} attempt{"s" if f["attempts"] != 1 else ""}</span></td>'
                   f'<td>{_when(f["ended"])}</td><td>{E(f["worker"] or "")}<br>'
                   f'<span class="sub">{E(f["host"] or "")}</span></td>'
                   f'<td><code class="error">{E(reading.last_line(error))}</code>'
                   f'{"".join(more)}</td></tr>')
    if not d.failures:
        out.append('<tr><td colspan="5">none</td></tr>')
    out.append("</table>")
    out.append(f'<h2>Lost workers and timeouts</h2><div class="sub">{d.trouble_count:,}'
               ' attempts ended because the worker was lost or the task timed out; the task'
               ' ran again if it had attempts left.')
    if d.trouble_count > len(d.troubles):
        out.append(f' The first {len(d.troubles):,} are shown.')
    out.append('</div><table id="troubles"><tr><th>task</th><th>attempt</th><th>function</th>'
               '<th>worker</th><th>started</th><th>lasted</th><th>outcome</th><th>why</th></tr>')
    for t in d.troubles:
        lasted = (t["ended"] - t["started"]) if t["ended"] else None
        out.append(f'<tr class="trouble" data-task="{t["task"]}"><td class="n">{t["task"]}</td>'
                   f'<td class="n">{t["number"]}</td><td><code>{E(t["name"])}</code></td>'
                   f'<td>{E(t["worker"] or "")} <span class="sub">{E(t["host"] or "")}</span>'
                   f'</td><td>{_when(t["started"])}</td><td class="n">{_secs(lasted)}</td>'
                   f'<td>{E(t["outcome"])}</td><td>{E(t["detail"] or "")}</td></tr>')
    if not d.troubles:
        out.append('<tr><td colspan="8">none</td></tr>')
    out.append("</table>")
    # settings
    out.append('<h2>Runs and settings</h2><table id="runs"><tr><th>run</th><th>started</th>'
               '<th>ended</th><th>master</th><th>interface</th><th>settings</th></tr>')
    for r in d.runs:
        st = r.status(d.generated)
        end = _when(r.ended) if r.ended else (
            f"still running (heartbeat {_when(r.heartbeat)})" if st == "running"
            else f"master gone (last heartbeat {_when(r.heartbeat)})")
        settings = "".join(f"<tr><td><code>{E(str(k))}</code></td><td><code>"
                           f"{E(json.dumps(v, default=str))}</code></td></tr>"
                           for k, v in sorted(r.settings.items()))
        out.append(f'<tr><td class="n">{r.id}</td><td>{_when(r.started)}</td><td>{E(end)}</td>'
                   f'<td><code>{E(r.program or "")}</code><br><span class="sub">'
                   f'{E(r.host or "?")} pid {r.pid or "?"}</span></td>'
                   f'<td>{E(r.interface or "")}</td><td><table class="kv">{settings}</table>'
                   '</td></tr>')
    out.append("</table>")
    out.append('<p class="sub">Made by <code>pymw report</code> from the journal alone'
               ' (read-only). Self-contained: no script, no network.</p></main></body></html>')
    return "".join(out)


def write_report(journal: str, output: str) -> str:
    """Write the report of ``journal`` to ``output``; return a one-line summary."""
    conn = reading.open_journal(journal)
    try:
        data = collect(conn, journal)
    finally:
        conn.close()
    text = page(data)
    tmp = output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, output)
    mode = "one bar per attempt" if data.marks is not None else "timeline aggregated"
    return (f"{data.counts['total']:,} tasks, {data.attempts:,} attempts, {mode}, "
            f"{len(text.encode()) / 1024:,.0f} KiB")
