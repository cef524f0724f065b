"""PyMW's ``ssh`` interface: tasks on remote hosts over SSH, with nothing installed there."""

from pymw_ssh.interface import SSHInterface

__version__ = "0.5.0"  # released together with pymw-core

__all__ = ["SSHInterface", "__version__"]
