"""Example PyMW interface: worker threads in the master's own process."""

from pymw_threads_example.interface import ThreadInterface

__all__ = ["ThreadInterface"]
