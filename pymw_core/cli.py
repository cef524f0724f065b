"""The ``pymw`` command: list interfaces, show and check the configuration, summarise a journal.

Exit codes a script can rely on: 0 all good, 1 a check failed (the interface is
installed but does not import, could not start, the probe task failed or timed out,
the Python versions differ; no interface installed at all), 2 a usage or configuration
error (bad arguments, unreadable config file, unknown interface or option).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from pymw_core import config, plugins
from pymw_core.errors import ConfigurationError, InterfaceError

OK, FAILED, USAGE = 0, 1, 2


# -- the effective configuration ------------------------------------------------------


@dataclass
class Effective:
    """What a ``Master(interface=None)`` started here would use, and why."""

    config_file: str | None = None
    config_data: dict[str, Any] = field(default_factory=dict)
    config_unusable: bool = False
    env_interface: str | None = None
    env_config: str | None = None
    interface: str | None = None
    chosen_by: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    installed: dict[str, str] | None = None
    broken: bool = False
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "config_file": self.config_file,
            "config": self.config_data,
            "env": {"PYMW_INTERFACE": self.env_interface, "PYMW_CONFIG": self.env_config},
            "interface": self.interface,
            "chosen_by": self.chosen_by,
            "options": self.options,
            "installed": self.installed,
            "broken": self.broken,
            "errors": self.errors,
        }


def _describe_entry_point(ep: Any) -> dict[str, str]:
    dist = getattr(ep, "dist", None)
    return {
        "name": ep.name,
        "distribution": getattr(dist, "name", None) or "?",
        "version": getattr(dist, "version", None) or "?",
        "target": ep.value,
    }


def effective(interface: str | None = None) -> Effective:
    """Resolve the interface and its options as the master does, recording each source.

    Problems (bad config file, unknown interface, unknown option) are collected in
    ``errors`` rather than raised, so they can be shown beside what is known.
    """
    eff = Effective(
        env_interface=os.environ.get("PYMW_INTERFACE") or None,
        env_config=os.environ.get("PYMW_CONFIG") or None,
    )
    try:
        cfg = config.load_config()
        eff.config_file, eff.config_data = cfg.path, cfg.data
        from_file = cfg.interface_name()
    except InterfaceError as exc:
        eff.errors.append(str(exc))
        eff.config_unusable = True
        cfg, from_file = config.Config(), None
    if interface:
        eff.interface, eff.chosen_by = interface, "--interface"
    elif eff.env_interface:
        eff.interface, eff.chosen_by = eff.env_interface, "PYMW_INTERFACE"
    elif from_file:
        eff.interface, eff.chosen_by = from_file, f"config file {cfg.path}"
    else:
        eff.interface, eff.chosen_by = config.DEFAULT_INTERFACE, "default"
    try:
        eff.options = cfg.options_for(eff.interface)
    except InterfaceError as exc:
        eff.errors.append(str(exc))
    installed = plugins.installed_interfaces()
    if eff.interface in installed:
        eff.installed = _describe_entry_point(installed[eff.interface])
    try:
        factory = plugins.load_factory(eff.interface, chosen=eff.chosen_by != "default")
    except InterfaceError as exc:
        eff.errors.append(str(exc))
        eff.broken = eff.interface in installed  # installed, but importing it fails
        return eff
    try:
        plugins.check_options(eff.interface, factory, eff.options)
    except InterfaceError as exc:
        eff.errors.append(str(exc))
    return eff


def _error_code(eff: Effective) -> int:
    """A broken installation is a failed check (1); anything else is configuration (2)."""
    return FAILED if eff.broken else USAGE


# -- subcommands ---------------------------------------------------------------------


def cmd_interfaces(args: argparse.Namespace, out: TextIO) -> int:
    rows = [_describe_entry_point(ep) for ep in plugins.installed_interfaces().values()]
    rows.sort(key=lambda row: row["name"])
    if args.json:
        json.dump(rows, out, indent=2)
        out.write("\n")
        return OK
    if not rows:
        print(f"no PyMW interface is installed (entry-point group {plugins.ENTRY_POINT_GROUP!r});"
              " try: pip install pymw-local", file=out)
        return FAILED
    headers = {"name": "NAME", "distribution": "DISTRIBUTION", "version": "VERSION",
               "target": "TARGET"}
    widths = {key: max(len(headers[key]), *(len(row[key]) for row in rows)) for key in headers}
    for row in [headers, *rows]:
        print("  ".join(row[key].ljust(widths[key]) for key in headers).rstrip(), file=out)
    return OK


def cmd_config(args: argparse.Namespace, out: TextIO) -> int:
    eff = effective(args.interface)
    if args.json:
        json.dump(eff.as_dict(), out, indent=2, default=str)
        out.write("\n")
        return _error_code(eff) if eff.errors else OK
    _print_effective(eff, out)
    if eff.errors:
        for error in eff.errors:
            print(f"error: {error}", file=out)
        return _error_code(eff)
    return OK


def _print_effective(eff: Effective, out: TextIO) -> None:
    looked = "none found (looked for $PYMW_CONFIG, ./pymw.toml, [tool.pymw] in ./pyproject.toml)"
    if eff.config_unusable:
        looked = "unusable (see the error below)"
    print(f"config file:    {eff.config_file or looked}", file=out)
    print(f"PYMW_INTERFACE: {eff.env_interface or '(not set)'}", file=out)
    print(f"interface:      {eff.interface}  (chosen by: {eff.chosen_by})", file=out)
    if eff.installed:
        info = eff.installed
        print(f"installed as:   {info['distribution']} {info['version']} ({info['target']})",
              file=out)
    else:
        print("installed as:   not installed", file=out)
    if eff.options:
        print("options:", file=out)
        for key, value in sorted(eff.options.items()):
            print(f"  {key} = {value!r}", file=out)
    else:
        print("options:        (none: the interface's defaults)", file=out)


def _make_probe() -> Callable[[], dict[str, Any]]:
    # A nested function is pickled by value, so the probe runs on a worker that has
    # only the bare worker runtime (no pymw_core.cli), as remote interfaces provide.
    def probe() -> dict[str, Any]:
        import os
        import platform
        import socket
        import sys

        return {
            "python": tuple(sys.version_info[:3]),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }

    return probe


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    from pymw_core.master import Master

    eff = effective(args.interface)
    _print_effective(eff, out)
    if eff.errors:
        for error in eff.errors:
            print(f"[FAIL] {error}", file=out)
        return _error_code(eff)

    def report(ok: bool, text: str) -> None:
        print(f"[{'ok' if ok else 'FAIL'}]{'  ' if ok else ''} {text}", file=out)

    started = time.monotonic()
    probed: set[int] = set()

    def each_worker_once(tasks: list[Any], workers: list[Any]) -> tuple[Any, Any]:
        # One probe per worker: a broken host among good ones must not pass unseen.
        for worker in workers:
            if id(worker) not in probed:
                probed.add(id(worker))
                return tasks[0], worker
        return None, None

    try:
        master = Master(eff.interface, scheduler_func=each_worker_once)
    except ConfigurationError as exc:
        report(False, str(exc))
        return USAGE
    except InterfaceError as exc:
        prefix = f"the {eff.interface!r} interface could not start"
        text = str(exc)
        report(False, text if text.startswith(prefix) else f"{prefix}: {text}")
        return FAILED
    except Exception as exc:
        report(False, f"the {eff.interface!r} interface could not start: "
                      f"{type(exc).__name__}: {exc}")
        return FAILED
    failed = False
    try:
        report(True, f"interface {eff.interface!r} started in {time.monotonic() - started:.2f} s")
        sent = time.monotonic()
        probe = _make_probe()
        tasks = [master.submit_task(probe) for _ in range(_worker_count(master))]
        deadline = sent + args.timeout
        infos = []
        for task in tasks:
            while not task.done() and time.monotonic() < deadline:
                time.sleep(0.02)
            if not task.done():
                report(False, f"the probe task did not finish within {args.timeout:g} s "
                              "(no worker reached? raise --timeout for a busy batch system)")
                return FAILED
            try:
                _, info = master.get_result(task)
            except Exception as exc:
                report(False, f"the probe task failed: {type(exc).__name__}: {exc}")
                return FAILED
            worker = "" if task.worker is None else f", worker {task.worker!r}"
            report(True, f"probe task ran on host {info['host']} (pid {info['pid']}{worker}) "
                         f"in {time.monotonic() - sent:.2f} s")
            infos.append(info)
        for name, why in _hosts_not_up(master.get_status()):
            failed = True
            report(False, f"host {name} is not used: {why}")
        mine = tuple(sys.version_info[:3])
        for info in infos:
            theirs = tuple(info["python"])
            shown = ".".join(map(str, theirs))
            if theirs[:2] != mine[:2]:
                failed = True
                report(False, f"worker Python {shown} ({info['executable']}) differs from the "
                              f"master's {'.'.join(map(str, mine))}: the minor versions must "
                              "match")
        if not failed:
            info = infos[0]
            report(True, f"worker Python {'.'.join(map(str, info['python']))} "
                         f"({info['executable']}) matches the master's "
                         f"{'.'.join(map(str, mine))}")
        status = master.get_status()
        extra = {k: v for k, v in status.items() if k not in _MASTER_COUNTERS}
        if extra:
            print("interface status: " + ", ".join(f"{k}={v!r}" for k, v in extra.items()),
                  file=out)
    finally:
        master.close()
    print("check failed" if failed else "all checks passed", file=out)
    return FAILED if failed else OK


def _worker_count(master: Any) -> int:
    """How many workers to probe: the interface's ``workers`` status, else those it offers
    now (distinct), else 1 (an interface without workers of its own, a batch system)."""
    reported = master.get_status().get("workers")
    if isinstance(reported, int) and not isinstance(reported, bool) and reported > 0:
        return reported
    get = getattr(master.interface, "get_available_workers", None)
    try:
        offered = get() if get is not None else None
    except Exception:
        offered = None
    if isinstance(offered, list) and offered:
        return len({id(worker) for worker in offered})
    return 1


def _hosts_not_up(status: dict[str, Any]) -> list[tuple[str, str]]:
    """Hosts an interface reports (``status["hosts"]``, as ``ssh`` does) that are not up:
    their workers take no probe, so the check names them instead of passing without them."""
    hosts = status.get("hosts")
    if not isinstance(hosts, dict):
        return []
    return [(str(name), f"{info.get('state')}: {info.get('error') or 'no reason given'}")
            for name, info in hosts.items()
            if isinstance(info, dict) and info.get("state") not in (None, "up")]


_MASTER_COUNTERS = frozenset(
    ("interface", "submitted", "queued", "running", "finished", "failed", "cancelled", "tasks")
)


def cmd_watch(args: argparse.Namespace, out: TextIO) -> int:
    from pymw_core.view.watch import watch

    if args.interval is not None and args.interval <= 0:
        print("pymw: error: --interval must be positive", file=sys.stderr)
        return USAGE
    try:
        return watch(args.journal, out, interval=args.interval, once=args.once,
                     plain=True if args.plain else None)
    except InterfaceError as exc:
        print(f"pymw watch: {exc}", file=sys.stderr)
        return USAGE


def cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    from pymw_core.view.report import write_report

    output = args.output or os.path.splitext(args.journal)[0] + ".html"
    try:
        summary = write_report(args.journal, output)
    except InterfaceError as exc:
        print(f"pymw report: {exc}", file=sys.stderr)
        return USAGE
    print(f"wrote {output} ({summary})", file=out)
    return OK


def cmd_journal(args: argparse.Namespace, out: TextIO) -> int:
    """``pymw journal PATH``: counts by state, time span, failures, hosts."""
    from pymw_core.journal_summary import format_summary, summarize

    try:
        summary = summarize(args.path, failures=max(0, args.failures))
    except InterfaceError as exc:  # JournalError: not a journal, missing ...
        print(f"pymw journal: {exc}", file=sys.stderr)
        return USAGE
    if args.json:
        json.dump(summary, out, indent=2)
        out.write("\n")
    else:
        print(format_summary(summary), file=out)
    return OK


# -- entry point ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from pymw_core import __version__

    parser = argparse.ArgumentParser(
        prog="pymw",
        description="PyMW: list installed interfaces, show and check the configuration, "
                    "watch a run and write its report.",
        epilog="exit codes: 0 all good, 1 a check failed, 2 usage or configuration error",
    )
    parser.add_argument("--version", action="version", version=f"pymw-core {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    listing = commands.add_parser(
        "interfaces", help="list the installed interfaces (entry-point group pymw.interfaces)"
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=cmd_interfaces)

    show = commands.add_parser(
        "config", help="show the effective configuration: config file, interface, options"
    )
    show.add_argument("--interface", metavar="NAME", help="resolve as Master(NAME) would")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(run=cmd_config)

    check = commands.add_parser(
        "check", help="start the configured interface and run a probe task on each of its workers"
    )
    check.add_argument("--interface", metavar="NAME", help="check this interface instead")
    check.add_argument("--timeout", metavar="S", type=float, default=120.0,
                       help="seconds to wait for the probe task (default: 120)")
    check.set_defaults(run=cmd_check)

    follow = commands.add_parser(
        "watch", help="a live view of a run in this terminal, read from its journal",
        description="A live view of a run, read from its journal (read-only). q or Ctrl-C "
                    "leaves; it ends by itself when the run ends or its master is gone. "
                    "Not on a terminal, it prints one line per refresh.",
        epilog="exit codes: 0 the run ended or you left, 1 the master is gone (died "
               "without ending the run), 2 not a journal or bad usage")
    follow.add_argument("journal", help="the run's journal file (Master(journal=...))")
    follow.add_argument("--interval", metavar="S", type=float, default=None,
                        help="seconds between refreshes (default: 1 on a terminal, "
                             "10 for plain lines)")
    follow.add_argument("--once", action="store_true", help="print one plain line and exit")
    follow.add_argument("--plain", action="store_true",
                        help="plain lines even on a terminal (for logs)")
    follow.set_defaults(run=cmd_watch)

    page = commands.add_parser(
        "report", help="write a run's report: one self-contained HTML file",
        description="Write one self-contained HTML page (no network needed to open it) "
                    "about a run, read from its journal: timeline, throughput, failures, "
                    "time per function, settings.")
    page.add_argument("journal", help="the run's journal file (Master(journal=...))")
    page.add_argument("-o", "--output", metavar="FILE", default=None,
                      help="the HTML file to write (default: the journal's name with .html)")
    page.set_defaults(run=cmd_report)

    journal = commands.add_parser(
        "journal", help="summarise a run's journal (works while the run goes on)"
    )
    journal.add_argument("path", help="the journal file (Master(journal=...))")
    journal.add_argument("--json", action="store_true", help="print JSON")
    journal.add_argument("--failures", metavar="N", type=int, default=10,
                         help="list the last N failed tasks (default: 10)")
    journal.set_defaults(run=cmd_journal)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``pymw`` command with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse exits 2 on bad usage, 0 on --help
        return stop.code if isinstance(stop.code, int) else USAGE
    if getattr(args, "timeout", 1.0) <= 0:
        print("pymw: error: --timeout must be positive", file=sys.stderr)
        return USAGE
    try:
        return args.run(args, sys.stdout)
    except KeyboardInterrupt:
        return 130
