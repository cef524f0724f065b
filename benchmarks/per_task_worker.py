"""One task per Python process, as PyMW 0.4's generic interface ran them.

``python per_task_worker.py IN OUT``: ``IN`` holds the pickled ``(function, args)``,
``OUT`` receives the pickled ``(ok, result_or_exception)``. Plain pickle and the
standard library only, so the start-up measured is Python's own, not PyMW's.
"""

from __future__ import annotations

import pickle
import sys


def main(in_path: str, out_path: str) -> None:
    with open(in_path, "rb") as fh:
        fn, args = pickle.load(fh)
    try:
        reply = (True, fn(*args))
    except Exception as exc:
        reply = (False, exc)
    with open(out_path, "wb") as fh:
        pickle.dump(reply, fh, pickle.HIGHEST_PROTOCOL)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
