"""Prime finder: which numbers of the form n*n + 1 are prime?

A PyMW classic. The range of n is cut into slices; each task tests its slice with a
Miller-Rabin test (deterministic for every value this example can reach) and returns
the primes it found::

    python examples/prime_finder.py                      # n = 1 .. 100000
    python examples/prime_finder.py --stop 1000000 --tasks 64
"""

from __future__ import annotations

import sys
import time

from common import open_master, parser

# With these bases Miller-Rabin is exact below 3.3e24 (n up to about 1.8e12 here).
_BASES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)


def is_prime(value: int) -> bool:
    """Miller-Rabin with fixed bases: exact for ``value`` below 3.3e24."""
    if value < 2:
        return False
    for p in _BASES:
        if value % p == 0:
            return value == p
    odd, twos = value - 1, 0
    while odd % 2 == 0:
        odd //= 2
        twos += 1
    for base in _BASES:
        x = pow(base, odd, value)
        if x in (1, value - 1):
            continue
        for _ in range(twos - 1):
            x = x * x % value
            if x == value - 1:
                break
        else:
            return False
    return True


def primes_in(first: int, last: int) -> list[int]:
    """The primes n*n + 1 for n from ``first`` to ``last`` inclusive.

    ``is_prime`` and ``_BASES`` travel with this function on their own: this script is
    the user's code, shipped by value. (PyMW 0.x needed ``dep_funcs=(is_prime,)``.)
    """
    return [n * n + 1 for n in range(first, last + 1) if is_prime(n * n + 1)]


def slices(start: int, stop: int, parts: int) -> list[tuple[int, int]]:
    """``start..stop`` (inclusive) cut into at most ``parts`` contiguous pieces."""
    count = stop - start + 1
    parts = min(parts, count)
    size, extra = divmod(count, parts)
    pieces, first = [], start
    for index in range(parts):
        last = first + size - 1 + (1 if index < extra else 0)
        pieces.append((first, last))
        first = last + 1
    return pieces


def main(argv: list[str] | None = None) -> int:
    args_parser = parser("Find the primes of the form n*n + 1, one slice of n per task.")
    args_parser.add_argument("--start", type=int, default=1, help="first n (default: 1)")
    args_parser.add_argument("--stop", type=int, default=100_000, help="last n (default: 100000)")
    args_parser.add_argument("--tasks", type=int, default=12, help="tasks (default: 12)")
    args = args_parser.parse_args(argv)
    if args.start < 1 or args.stop < args.start or args.tasks < 1:
        args_parser.error("need 1 <= --start <= --stop and --tasks >= 1")
    if args.stop > 1_800_000_000_000:
        args_parser.error("--stop above 1.8e12 is beyond the exact Miller-Rabin bases")

    started = time.perf_counter()
    with open_master(args) as master:
        tasks = [master.submit_task(primes_in, piece)
                 for piece in slices(args.start, args.stop, args.tasks)]
        primes: list[int] = []
        for task in tasks:  # in order, so the list comes out sorted
            primes += master.get_result(task)[1]
        name = master.interface_name
    elapsed = time.perf_counter() - started

    print(f"found {len(primes)} primes of the form n*n + 1 for n = {args.start}..{args.stop}")
    print("largest: " + ", ".join(str(p) for p in primes[-5:]))
    print(f"{len(tasks)} tasks on the {name!r} interface, {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
