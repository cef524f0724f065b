"""Word count with map-reduce: PyMW's ``PyMW_MapReduce`` on a text file.

The map tasks each count the words of a slice of the lines; the reduce tasks each
sum the counts of a share of the map output; the master merges the reduce results
and prints the most common words::

    python examples/word_count.py                        # examples/data/words.txt
    python examples/word_count.py --file book.txt --top 20 --parts 8
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import Counter

from common import open_master, parser

from pymw_core import PyMW_MapReduce

DEFAULT_TEXT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "words.txt")
_WORD = re.compile(r"[a-z']+")


def map_words(lines: list[str]) -> list[tuple[str, int]]:
    """``(word, count)`` for every word in ``lines``, lower-cased."""
    counts: Counter[str] = Counter()
    for line in lines:
        counts.update(word.strip("'") for word in _WORD.findall(line.lower()))
    counts.pop("", None)
    return sorted(counts.items())


def reduce_counts(pairs: list[tuple[str, int]]) -> dict[str, int]:
    """Sum the counts of each word in a share of the map output."""
    totals: dict[str, int] = {}
    for word, count in pairs:
        totals[word] = totals.get(word, 0) + count
    return totals


def main(argv: list[str] | None = None) -> int:
    args_parser = parser("Count the words of a text with map-reduce tasks.")
    args_parser.add_argument("--file", default=DEFAULT_TEXT,
                             help="text to count (default: examples/data/words.txt)")
    args_parser.add_argument("--parts", type=int, default=4,
                             help="map tasks, and as many reduce tasks (default: 4)")
    args_parser.add_argument("--top", type=int, default=10, help="words to print (default: 10)")
    args = args_parser.parse_args(argv)
    if args.parts < 1 or args.top < 0:
        args_parser.error("need --parts >= 1 and --top >= 0")
    try:
        with open(args.file, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        args_parser.error(f"cannot read {args.file}: {exc}")

    started = time.perf_counter()
    with open_master(args) as master:
        job = PyMW_MapReduce(master).submit_task_mapreduce(
            map_words, reduce_counts, num_worker=args.parts, input_data=lines,
            red_worker=args.parts,
        )
        _, partials = master.get_result(job)
        name = master.interface_name
    elapsed = time.perf_counter() - started

    totals: Counter[str] = Counter()
    for partial in partials:  # a word may straddle two reduce shares
        totals.update(partial)
    print(f"{sum(totals.values())} words, {len(totals)} distinct, "
          f"in {os.path.basename(args.file)}")
    for word, count in sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:args.top]:
        print(f"{count:8}  {word}")
    print(f"{args.parts} map and {args.parts} reduce tasks on the {name!r} interface, "
          f"{elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
