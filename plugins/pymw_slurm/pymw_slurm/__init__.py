"""PyMW's Slurm interface: tasks in job arrays whose elements claim them, many per job."""

from pymw_slurm.interface import SlurmInterface

__version__ = "0.5.0"  # released together with pymw-core

__all__ = ["SlurmInterface", "__version__"]
