"""Monte Carlo pi with a worker script, the way PyMW 0.x programs were written.

The task is the path of ``scripts/monte_pi_worker.py``; its input is any object the
script reads back with ``pymw_get_input()``, and what it passes to
``pymw_return_output()`` is the task's result::

    python examples/monte_pi_script.py --workers 4
"""

from __future__ import annotations

import math
import os
import sys
import time

from common import open_master, parser

WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                             "scripts", "monte_pi_worker.py")


def main(argv: list[str] | None = None) -> int:
    args_parser = parser("Estimate pi by Monte Carlo sampling with a PyMW 0.x worker script.")
    args_parser.add_argument("--samples", type=int, default=2_000_000,
                             help="darts to throw in all (default: 2,000,000)")
    args_parser.add_argument("--tasks", type=int, default=8, help="tasks (default: 8)")
    args_parser.add_argument("--seed", type=int, default=2008, help="first task's seed")
    args = args_parser.parse_args(argv)
    if args.samples < 1 or args.tasks < 1:
        args_parser.error("--samples and --tasks must be at least 1")

    size, extra = divmod(args.samples, args.tasks)
    started = time.perf_counter()
    with open_master(args) as master:
        tasks = [
            master.submit_task(WORKER_SCRIPT, input_data=(args.seed + i, size + (i < extra)))
            for i in range(args.tasks)
        ]
        hits = thrown = 0
        for task in tasks:
            _, (task_hits, task_samples) = master.get_result(task)
            hits += task_hits
            thrown += task_samples
        name = master.interface_name
    elapsed = time.perf_counter() - started

    estimate = 4.0 * hits / thrown
    print(f"pi is about {estimate:.6f} (error {estimate - math.pi:+.6f})")
    print(f"{thrown:,} darts in {args.tasks} tasks running {os.path.basename(WORKER_SCRIPT)} "
          f"on the {name!r} interface, {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
