"""PyMW's default interface: persistent worker processes on this machine."""

from pymw_local.interface import LocalInterface

__version__ = "0.5.0"  # released together with pymw-core

__all__ = ["LocalInterface", "__version__"]
