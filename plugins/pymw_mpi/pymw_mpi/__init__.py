"""PyMW's ``mpi`` interface: tasks on MPI ranks (mpi4py), under ``mpiexec`` or self-launched.

Importing this package never initialises MPI; only the ranks do.
"""

from pymw_mpi.interface import MPIInterface

__version__ = "0.5.0"  # released together with pymw-core

__all__ = ["MPIInterface", "__version__"]
