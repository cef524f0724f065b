"""PyMW's ``ssh`` interface: tasks on remote hosts over SSH, with nothing installed there."""

from pymw_ssh.interface import SSHInterface

__all__ = ["SSHInterface"]
