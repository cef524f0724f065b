"""Monte Carlo pi: throw random darts at a square and count those inside the circle.

PyMW's first example. Each task throws its share of the darts with its own seed and
returns how many landed inside the quarter circle; the master adds them up::

    python examples/monte_pi.py                          # default interface (local)
    python examples/monte_pi.py --workers 4 --samples 10000000
    python examples/monte_pi.py --interface ssh          # hosts from pymw.toml
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time

from common import open_master, parser


def count_hits(seed: int, samples: int) -> int:
    """Darts out of ``samples`` that land inside the unit quarter circle."""
    draw = random.Random(seed).random
    hits = 0
    for _ in range(samples):
        x, y = draw(), draw()
        if x * x + y * y <= 1.0:
            hits += 1
    return hits


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` whole numbers that differ by at most one."""
    size, extra = divmod(total, parts)
    return [size + (1 if i < extra else 0) for i in range(parts)]


def pi_arguments(description: str, argv: list[str] | None) -> argparse.Namespace:
    """The command line both pi examples share."""
    args_parser = parser(description)
    args_parser.add_argument("--samples", type=int, default=2_000_000,
                             help="darts to throw in all (default: 2,000,000)")
    args_parser.add_argument("--tasks", type=int, default=8, help="tasks (default: 8)")
    args_parser.add_argument("--seed", type=int, default=2008, help="first task's seed")
    args = args_parser.parse_args(argv)
    if args.samples < 1 or args.tasks < 1:
        args_parser.error("--samples and --tasks must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = pi_arguments("Estimate pi by Monte Carlo sampling, one share of darts per task.", argv)

    started = time.perf_counter()
    with open_master(args) as master:
        for index, darts in enumerate(shares(args.samples, args.tasks)):
            master.submit_task(count_hits, (args.seed + index, darts))
        hits = 0
        for _ in range(args.tasks):
            _, task_hits = master.get_result()  # whichever task finishes next
            hits += task_hits
        name = master.interface_name
    elapsed = time.perf_counter() - started

    estimate = 4.0 * hits / args.samples
    print(f"pi is about {estimate:.6f} (error {estimate - math.pi:+.6f})")
    print(f"{args.samples:,} darts in {args.tasks} tasks on the {name!r} interface, "
          f"{elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
