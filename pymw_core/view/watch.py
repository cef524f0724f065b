"""``pymw watch run.db``: a live view of a run in a plain terminal, from its journal.

ANSI escapes only (no curses, no extra dependency), so it works over ssh on any login
node. The frame is redrawn in place on the normal screen, so the last frame stays
visible after the view ends. When stdout is not a terminal, it prints one plain line
per refresh instead. It leaves by itself when the run ends or its master is gone.
"""

from __future__ import annotations

import collections
import os
import select
import shutil
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from pymw_core.view import reading
from pymw_core.view.reading import STATES, Failure, Run, Running, Worker

WINDOW = 10.0        # seconds behind "throughput now"
RECENT = 60.0        # a worker seen this recently is listed even when idle
FAILURE_WINDOW = 600.0  # lost/timed-out attempts this recent are listed among failures
MAX_FAILURES = 5
FULL_COUNT = 30.0    # seconds between full counts of the tasks by state
ID_MARGIN = 50_000   # task ids a late write may lag the highest one by (see counts)

# Exit codes: the run ended (or the user quit), the master is gone, bad usage.
ENDED, GONE, USAGE = 0, 1, 2


@dataclass
class Snapshot:
    """What one frame shows: read from the journal at ``now``."""

    now: float
    run: Run
    run_count: int
    status: str
    counts: dict[str, int]
    rate_now: float | None
    rate_all: float | None
    eta: float | None
    running: list[Running] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.counts["finished"] + self.counts["failed"]


class Follower:
    """Follows one journal: each ``take()`` reads a snapshot.

    Throughput now is the change of the finished+failed count over the last
    ``WINDOW`` seconds of samples, so no query has to scan the ended tasks; the one
    scan (tasks this run ended before the view started) happens once.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.samples: collections.deque[tuple[float, int]] = collections.deque()
        self.base: tuple[int, int] | None = None  # (run id, done before this view)
        self.last: dict[str, int] | None = None   # the previous frame's counts
        self.base_id = 0                           # tasks up to this id: ``below``
        self.below = 0
        self.recount = 0.0                         # when the counts were last taken in full
        self.cost = 0.0                            # seconds the last take() spent reading

    def counts(self, now: float) -> dict[str, int]:
        """Tasks by state, without scanning the biggest state every frame.

        The count of every state is a scan of its range of the ``tasks_state`` index, so
        the state that was biggest in the previous frame (most often ``finished``) is
        derived instead, from the total minus the other states. The total is the tasks
        up to an id ``base``, counted at the last full count, plus those past it (a
        range of the primary key). ``base`` stays ``ID_MARGIN`` below the highest id
        then seen, because the master writes a task late (up to a second) when it has
        not ended, after tasks with higher ids (at most ``journal_writer._HOLD_ROWS``).
        Tasks are never deleted from a journal; still, a full count every
        ``FULL_COUNT`` seconds keeps it honest.
        """
        conn = self.conn
        got: dict[str, int] | None = None
        if self.last is not None and now - self.recount <= FULL_COUNT:
            total = self.below + conn.execute("SELECT count(*) FROM tasks WHERE id > ?",
                                              (self.base_id,)).fetchone()[0]
            big = max(STATES, key=lambda s: self.last[s])  # type: ignore[index]
            got = {s: conn.execute("SELECT count(*) FROM tasks WHERE state = ?", (s,)
                                   ).fetchone()[0] for s in STATES if s != big}
            got[big] = total - sum(got.values())
            got["total"] = total
            if got[big] < 0:  # cannot happen unless tasks were deleted: count in full
                got = None
        if got is None:
            got = reading.counts(conn)
            top = conn.execute("SELECT coalesce(max(id), 0) FROM tasks").fetchone()[0]
            self.base_id = max(top - ID_MARGIN, 0)
            self.below = conn.execute("SELECT count(*) FROM tasks WHERE id <= ?",
                                      (self.base_id,)).fetchone()[0]
            self.recount = now
        self.last = got
        return {s: got[s] for s in (*STATES, "total")}

    def take(self, now: float | None = None) -> Snapshot | None:
        """A snapshot, or None while the journal holds no run yet."""
        conn = self.conn
        began = time.perf_counter()
        with conn:  # one read transaction: the numbers of a frame agree with each other
            conn.execute("BEGIN")
            all_runs = reading.runs(conn)
            if not all_runs:
                return None
            run = all_runs[-1]
            now = time.time() if now is None else now
            status = run.status(now)
            counts = self.counts(now)
            done = counts["finished"] + counts["failed"]
            if self.base is None or self.base[0] != run.id:
                self.base = (run.id, done - reading.done_since(conn, run.started))
                self.samples.clear()
            live = status == "running"
            clock = now if live else run.last_seen()
            rate_now = None
            if live:
                self.samples.append((now, done))
                while self.samples and now - self.samples[0][0] > WINDOW:
                    self.samples.popleft()
                first_t, first_done = self.samples[0]
                if now - first_t >= 0.5:
                    rate_now = (done - first_done) / (now - first_t)
            elapsed = clock - run.started
            ended_here = done - self.base[1]
            rate_all = ended_here / elapsed if elapsed > 0 else None
            left = counts["queued"] + counts["running"]
            eta = None
            if live and left:
                rate = rate_now if rate_now else rate_all
                eta = left / rate if rate else None
            snap = Snapshot(
                now=now, run=run, run_count=len(all_runs), status=status, counts=counts,
                rate_now=rate_now, rate_all=rate_all, eta=eta,
                running=reading.running(conn),
                workers=reading.recent_workers(conn, clock - RECENT),
                failures=reading.recent_failures(conn, MAX_FAILURES, clock - FAILURE_WINDOW),
            )
        self.cost = time.perf_counter() - began
        return snap

    def pause(self, interval: float) -> float:
        """The wait before the next frame: ``interval``, stretched so that reading the
        journal takes at most a tenth of the watcher's time (1M-task journals)."""
        return max(interval, 10 * self.cost)


# -- formatting -----------------------------------------------------------------------

COLOURS = {"queued": "2", "running": "36", "finished": "32", "failed": "31",
           "cancelled": "33", "title": "1", "dim": "2", "bad": "31", "gone": "1;31",
           "ended": "1;32", "live": "1;36"}


def duration(seconds: float | None) -> str:
    """``1:02:03``, ``4:05``, or ``12.3 s``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}/s" if value >= 100 else f"{value:.2f}/s"


def clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


Line = list[tuple[str, str]]  # segments: (text, colour key or "")


def frame(snap: Snapshot, width: int, height: int, keys: bool) -> list[Line]:
    """The lines of one frame, at most ``height`` of them."""
    run, c = snap.run, snap.counts
    lines: list[Line] = []
    where = " · ".join(x for x in (
        run.interface or "?", f"{run.host or '?'} pid {run.pid or '?'}",
        os.path.basename(run.program or "") or None) if x)
    runs = f"run {run.id}" + (f" of {snap.run_count}" if snap.run_count > 1 else "")
    status_key = {"running": "live", "ended": "ended"}.get(snap.status, "gone")
    since = (snap.now if snap.status == "running" else run.last_seen()) - run.started
    lines.append([(f"PyMW {runs}", "title"), (f"  {where}  ", ""),
                  (snap.status, status_key), (f"  {duration(since)}  {clock(snap.now)}", "dim")])
    lines.append([(f"tasks {c['total']:,}  ", "title")] + [
        seg for state in STATES
        for seg in ((f"{state} ", ""), (f"{c[state]:,}", state), ("  ", ""))])
    lines.append(bar(c, min(width - 10, 60)))
    lines.append([("throughput ", "title"), (rate(snap.rate_now), ""),
                  (f" now (last {WINDOW:g} s)  ", "dim"), (rate(snap.rate_all), ""),
                  (" overall  ", "dim"), ("time left ", "title"),
                  ("~" + duration(snap.eta) if snap.eta is not None else "-", "")])
    lines.append([])
    # A worker may hold more than one attempt (local hands it the next task ahead): the
    # oldest is the one it runs, the others wait on it.
    running: dict[str, Running] = {}
    waiting: dict[str, int] = {}
    for r in snap.running:  # oldest first
        if r.worker in running:
            waiting[r.worker] = waiting.get(r.worker, 0) + 1
        else:
            running[r.worker] = r
    seen = {w.worker: w for w in snap.workers}
    names = sorted(set(running) | set(seen), key=_natural)
    lines.append([("workers ", "title"),
                  (f"{len(running)} running, {len(names)} seen in the last {RECENT:g} s", "dim")])
    room = max(1, height - len(lines) - 3 - (2 + min(MAX_FAILURES, len(snap.failures) or 1)))
    wide = max([len(n) for n in names] + [6])
    hosts = [r.host for r in running.values()] + [w.host for w in seen.values()]
    host_wide = min(max([len(h) for h in hosts] + [4]), 16)
    for i, name in enumerate(names):
        if i == room - 1 and len(names) > room:
            lines.append([(f"  ... and {len(names) - i} more", "dim")])
            break
        r, w = running.get(name), seen.get(name)
        host = (r.host if r else w.host if w else "") or ""
        row: Line = [(f"  {name:<{wide}}  {host[:host_wide]:<{host_wide}}  ", "")]
        if r:
            took = (snap.now if snap.status == "running" else run.last_seen()) - r.started
            row += [(f"task {r.task} ", ""), (r.name, "running"),
                    (f" attempt {r.number}" if r.number > 1 else "", "dim"),
                    (f"  {duration(took)}", "")]
            if name in waiting:
                row += [(f"  +{waiting[name]} waiting", "dim")]
        else:
            row += [("idle", "dim")]
        if w and w.done:
            row += [(f"  ({w.done} done in {RECENT:g} s)", "dim")]
        lines.append(row)
    if not names:
        lines.append([("  (none)", "dim")])
    lines.append([])
    lines.append([("latest failures", "title")])
    for f in snap.failures:
        kind = "failed" if f.kind == "failed" else f"attempt {f.kind}"
        lines.append([(f"  {clock(f.when)}  task {f.task} {f.name}  ", ""),
                      (kind, "bad"), (f"  {f.line}", "")])
    if not snap.failures:
        lines.append([("  (none)", "dim")])
    if snap.status == "running":
        lines.append([("q quits" if keys else "Ctrl-C quits", "dim")])
    elif snap.status == "ended":
        lines.append([("the run has ended", "ended")])
    else:
        lines.append([(f"master gone: no heartbeat since {clock(run.last_seen())}; tasks "
                       "shown running were in flight when it stopped", "gone")])
    return lines[:height]


def _natural(name: str) -> tuple:
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def bar(c: dict[str, int], width: int) -> Line:
    """A progress bar: finished, failed, cancelled, running, then queued."""
    total = c["total"] or 1
    width = max(width, 10)
    order = ("finished", "failed", "cancelled", "running")
    cells = [int(width * c[s] / total) for s in order]
    fill = sum(cells)
    segs: Line = [("[", "")]
    for state, n in zip(order, cells, strict=True):
        segs.append(("█" * n, state))
    segs.append(("░" * (width - fill), "queued"))
    done = c["finished"] + c["failed"] + c["cancelled"]
    segs.append((f"] {100 * done / total:5.1f}%", ""))
    return segs


def render(line: Line, width: int, colour: bool) -> str:
    """One line cut to ``width`` columns, with ANSI colours when asked."""
    out, used = [], 0
    for text, key in line:
        if used >= width:
            break
        text = text[: width - used]
        used += len(text)
        code = COLOURS.get(key) if colour and key else None
        out.append(f"\x1b[{code}m{text}\x1b[0m" if code else text)
    return "".join(out)


def plain_line(snap: Snapshot) -> str:
    """The one-line form, for logs and pipes."""
    c = snap.counts
    parts = [clock(snap.now), snap.status] + [f"{s} {c[s]}" for s in STATES]
    parts += [f"now {rate(snap.rate_now)}", f"overall {rate(snap.rate_all)}",
              f"left {duration(snap.eta)}", f"workers {len(snap.running)} busy"]
    if snap.failures:
        f = snap.failures[0]
        parts.append(f"last failure: task {f.task} {f.line}")
    return "  ".join(parts)


# -- the loop ---------------------------------------------------------------------------


class _Quit(Exception):
    pass


def watch(path: str, out: TextIO, interval: float | None = None, once: bool = False,
          plain: bool | None = None) -> int:
    """Follow the journal at ``path`` until the run ends, the master is gone, or ``q``.

    Returns ``ENDED`` (0) when the run ended or the user quit, ``GONE`` (1) when its
    master stopped without ending it.
    """
    conn = reading.open_journal(path)
    try:
        tty = out.isatty() if plain is None else not plain
        if interval is None:
            interval = 1.0 if tty else 10.0
        follower = Follower(conn)
        if tty and not once:
            return _live(follower, out, interval)
        return _lines(follower, out, interval, once)
    finally:
        conn.close()


def _lines(follower: Follower, out: TextIO, interval: float, once: bool) -> int:
    while True:
        snap = follower.take()
        if snap is None:
            print(f"{clock(time.time())}  waiting: the journal holds no run yet", file=out)
        else:
            print(plain_line(snap), file=out, flush=True)
            if snap.status != "running":
                print(_farewell(snap), file=out, flush=True)
                return ENDED if snap.status == "ended" else GONE
        if once:
            return ENDED
        out.flush()
        time.sleep(follower.pause(interval))


def _farewell(snap: Snapshot) -> str:
    if snap.status == "ended":
        return f"the run has ended ({clock(snap.run.last_seen())})"
    return f"master gone: no heartbeat since {clock(snap.run.last_seen())}"


def _live(follower: Follower, out: TextIO, interval: float) -> int:
    colour = "NO_COLOR" not in os.environ
    stdin = sys.stdin
    keys = stdin is not None and stdin.isatty()
    fd = stdin.fileno() if keys else -1
    saved = None
    if keys:
        import termios
        import tty

        saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)  # keys arrive one by one, unechoed; Ctrl-C still interrupts

    def on_term(signum: int, _frame: object) -> None:
        raise _Quit

    old_term = signal.signal(signal.SIGTERM, on_term)
    drawn, size = 0, None
    out.write("\x1b[?25l")  # hide the cursor while drawing
    code = ENDED
    try:
        while True:
            snap = follower.take()
            cols, rows = shutil.get_terminal_size()
            buf = []
            if drawn and (cols, rows) != size:
                buf.append("\x1b[H\x1b[2J")  # resized: start from a clean screen
            elif drawn:
                buf.append(f"\x1b[{drawn}F")  # back to the frame's first line
            size = (cols, rows)
            if snap is None:
                lines: list[Line] = [[("waiting: the journal holds no run yet", "dim")]]
            else:
                lines = frame(snap, cols - 1, rows - 1, keys)
            for line in lines:
                buf.append(render(line, cols - 1, colour) + "\x1b[K\n")
            buf.append("\x1b[J")
            out.write("".join(buf))
            out.flush()
            drawn = len(lines)
            if snap is not None and snap.status != "running":
                code = ENDED if snap.status == "ended" else GONE
                break
            if _wait_key(fd, follower.pause(interval)):
                break
    except (KeyboardInterrupt, _Quit):
        code = 130
    finally:
        out.write("\x1b[0m\x1b[?25h")
        out.flush()
        signal.signal(signal.SIGTERM, old_term)
        if saved is not None:
            import termios

            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    return code


def _wait_key(fd: int, timeout: float) -> bool:
    """Sleep ``timeout`` seconds, or less if ``q`` is pressed; True when it was."""
    if fd < 0:
        time.sleep(timeout)
        return False
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            data = os.read(fd, 64)
            if not data or b"q" in data or b"Q" in data:
                return True
