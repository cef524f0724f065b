"""Example PyMW interface: worker threads in the master's own process."""

from pymw_threads_example.interface import ThreadInterface

__version__ = "0.1.0"

__all__ = ["ThreadInterface", "__version__"]
