"""Which interface a master uses when the program does not say, and with which options.

Order: the ``interface`` argument, then ``PYMW_INTERFACE``, then the config file, then
``"local"``. The config file is ``$PYMW_CONFIG``, else ``pymw.toml`` in the working
directory, else ``[tool.pymw]`` of ``pyproject.toml`` there::

    interface = "ssh"          # the default interface
    [ssh]                      # options of the ssh interface ([tool.pymw.ssh] in pyproject)
    hosts = ["node1", "node2"]
"""

from __future__ import annotations

import codecs
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from pymw_core.errors import ConfigurationError, InterfaceError

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
            raw = fh.read()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the PyMW config file {path}: {exc}") from exc
    try:
        return tomllib.loads(_decode(path, raw))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"the PyMW config file {path} is not valid TOML: {exc}") from exc


_OTHER_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
               (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def _decode(path: str, raw: bytes) -> str:
    """The text of a config file: TOML is UTF-8 by its specification (a UTF-8 byte order
    mark, as some editors write, is skipped); anything else is refused naming the file
    and where its first byte that is not UTF-8 sits."""
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    else:
        for bom, name in _OTHER_BOMS:
            if raw.startswith(bom):
                raise ConfigurationError(
                    f"the PyMW config file {path} is {name} (it starts with a {name} byte "
                    "order mark), but TOML files are UTF-8: save it as UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigurationError(
            f"the PyMW config file {path} is not UTF-8, as TOML files must be: byte "
            f"{exc.start} (line {line}) is {raw[exc.start:exc.start + 1]!r}; save it as "
            "UTF-8") from None


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
