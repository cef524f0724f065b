"""``mpiexec -n N python -m pymw_mpi prog.py [args]``: the program on rank 0, workers elsewhere.

Rank 0 runs ``prog.py`` as ``__main__`` (as ``python prog.py`` would), and its
``Master("mpi")`` uses ranks 1..N-1; those ranks serve tasks and never run the
program. ``-m module`` runs a module instead of a file. When the program ends, the
worker ranks are told to leave (those still running a task are made to exit).
"""

from __future__ import annotations

import runpy
import sys

USAGE = "usage: mpiexec -n N python -m pymw_mpi (prog.py | -m module) [args...]"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or (argv[0] == "-m" and len(argv) < 2):
        print(USAGE, file=sys.stderr)
        sys.exit(2 if not argv or argv[0] not in ("-h", "--help") else 0)
    try:
        from mpi4py import MPI
    except ImportError:
        sys.exit("pymw_mpi: mpi4py is not installed here: pip install mpi4py")
    comm = MPI.COMM_WORLD
    if comm.Get_rank() != 0:
        from pymw_mpi.rank import serve

        serve(comm)
        return
    from pymw_mpi import launched
    from pymw_mpi.hub import Hub

    hub = launched.hub = Hub(comm)
    status = 0
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            sys.path.insert(0, _folder(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        raise
    except BaseException:
        status = 1
        raise
    finally:
        hub.close()  # ranks still running a task are made to exit; the rest leave cleanly
        launched.hub = None
        if hub.lost_any:  # MPI_Finalize would wait for the dead rank for ever
            import traceback

            from pymw_mpi.rank import leave_without_finalize

            if sys.exc_info()[0] not in (None, SystemExit):
                traceback.print_exc()
            leave_without_finalize(status)


def _folder(path: str) -> str:
    import os

    return os.path.dirname(os.path.abspath(path))


if __name__ == "__main__":
    main()
