"""PyMW's default interface: persistent worker processes on this machine."""

from pymw_local.interface import LocalInterface

__all__ = ["LocalInterface"]
