"""What every example shares: ``--interface NAME`` and ``--workers N``, and the master.

Not part of PyMW: a few lines each example would otherwise repeat.
"""

from __future__ import annotations

import argparse
import sys

from pymw_core import InterfaceError, Master
from pymw_core.config import resolve


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every example takes."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument(
        "--interface", metavar="NAME", default=None,
        help="PyMW interface (default: $PYMW_INTERFACE, else the config file, else local)",
    )
    result.add_argument(
        "--workers", metavar="N", type=int, default=None,
        help="worker processes for the local interface (default: the CPU count)",
    )
    return result


def open_master(args: argparse.Namespace) -> Master:
    """The master the command line asks for.

    ``--workers`` is the ``num_workers`` option of ``local``; other interfaces size
    their pools with their own options (hosts, a batch system), so it is ignored there.
    """
    try:
        name = resolve(args.interface, {}).name
        options = {}
        if args.workers is not None:
            if name == "local":
                options["num_workers"] = args.workers
            else:
                print(f"note: --workers applies to the local interface only; {name!r} "
                      "takes its worker count from its own options", file=sys.stderr)
        return Master(args.interface, **options)
    except InterfaceError as exc:  # unknown name or option, bad config: say so, exit 2
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
