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

from common import open_master
from monte_pi import pi_arguments

WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                             "scripts", "monte_pi_worker.py")


def main(argv: list[str] | None = None) -> int:
    args = pi_arguments("Estimate pi by Monte Carlo sampling with a PyMW 0.x worker script.", argv)

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
