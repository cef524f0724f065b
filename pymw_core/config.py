"""Which interface a master uses when the program does not say, and with which options.

Order: the ``interface`` argument, then ``PYMW_INTERFACE``, then the config file, then
``"local"``. The config file is ``$PYMW_CONFIG``, else ``pymw.toml`` in the working
directory, else ``[tool.pymw]`` of ``pyproject.toml`` there::

    interface = "ssh"          # the default interface
    [ssh]                      # options of the ssh interface ([tool.pymw.ssh] in pyproject)
    hosts = ["node1", "node2"]
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

from pymw_core.errors import InterfaceError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_INTERFACE = "local"


@dataclass
class Config:
    """The settings read from the config file, and where they came from."""

    path: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def interface_name(self) -> str | None:
        name = self.data.get("interface")
        if name is not None and not isinstance(name, str):
            raise InterfaceError(f"{self.path}: 'interface' must be a string, not {name!r}")
        return name

    def options_for(self, name: str) -> dict[str, Any]:
        table = self.data.get(name, {})
        if not isinstance(table, dict):
            raise InterfaceError(f"{self.path}: [{name}] must be a table of options")
        return dict(table)


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise InterfaceError(f"cannot read the PyMW config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InterfaceError(f"the PyMW config file {path} is not valid TOML: {exc}") from exc


def load_config(cwd: str | None = None) -> Config:
    """Find and read the config file; an empty Config when there is none."""
    explicit = os.environ.get("PYMW_CONFIG")
    if explicit:
        if not os.path.isfile(explicit):
            raise InterfaceError(f"PYMW_CONFIG names {explicit!r}, which is not a file")
        return Config(explicit, _read_toml(explicit))
    cwd = cwd or os.getcwd()
    own = os.path.join(cwd, "pymw.toml")
    if os.path.isfile(own):
        return Config(own, _read_toml(own))
    pyproject = os.path.join(cwd, "pyproject.toml")
    if os.path.isfile(pyproject):
        table = _read_toml(pyproject).get("tool", {}).get("pymw")
        if isinstance(table, dict):
            return Config(pyproject + " [tool.pymw]", table)
    return Config()


@dataclass
class Choice:
    """The interface a master will use, its merged options, and whether anyone named it."""

    name: str
    options: dict[str, Any]
    chosen: bool  # False: nobody named one, the default applies


def resolve(name: str | None, options: dict[str, Any]) -> Choice:
    """The interface and its merged options (arguments win over the file)."""
    config = load_config()
    chosen = name or os.environ.get("PYMW_INTERFACE") or config.interface_name()
    merged = config.options_for(chosen or DEFAULT_INTERFACE)
    merged.update(options)
    return Choice(chosen or DEFAULT_INTERFACE, merged, bool(chosen))
