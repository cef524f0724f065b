"""A PyMW 0.x-style worker script: Monte Carlo pi for one share of the darts.

The master submits this file by path. On the worker it runs as ``__main__`` with
``pymw_get_input()`` and ``pymw_return_output(value)`` in its globals, exactly as
PyMW 0.x worker scripts expect, so such scripts run unchanged.
"""

# ruff: noqa: F821 - pymw_get_input and pymw_return_output are provided by the worker

import random

seed, samples = pymw_get_input()
draw = random.Random(seed).random
hits = 0
for _ in range(samples):
    x, y = draw(), draw()
    if x * x + y * y <= 1.0:
        hits += 1
pymw_return_output((hits, samples))
