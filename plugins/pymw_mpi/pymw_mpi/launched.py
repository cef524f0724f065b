"""The hub of a program started as ``mpiexec -n N python -m pymw_mpi prog.py``, if this is one.

Set by :mod:`pymw_mpi.__main__` on rank 0 before the program runs; the interface
finds it here and uses ranks 1..N-1 instead of starting MPI workers of its own.
"""

from __future__ import annotations

from typing import Any

hub: Any = None  # pymw_mpi.hub.Hub on rank 0 of an MPI launch, else None
