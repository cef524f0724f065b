"""Which machine a ``hosts`` entry means: ``[user@]host[:port]`` read through ``~/.ssh/config``.

The rules are OpenSSH's: the entry's own user and port win over the config file's, the
config's ``HostName`` names the machine to dial, and ``UserKnownHostsFile`` replaces the
default known_hosts files. paramiko parses the file; what it leaves unexpanded
(``UserKnownHostsFile``) is expanded here.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
from dataclasses import dataclass, field

import paramiko

from pymw_core.errors import InterfaceError

DEFAULT_CONFIG = "~/.ssh/config"
DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
_SPEC = re.compile(
    r"^(?:(?P<user>[^@\s]+)@)?"  # user@
    r"(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:@\s\[\]]+))"  # [v6 address] or host
    r"(?::(?P<port>\d+))?$"  # :port
)


@dataclass
class Target:
    """Everything needed to dial one host, after the config file was applied."""

    name: str  # what the user wrote in ``hosts``: the name in messages and get_status()
    alias: str  # the host part of it, looked up in the config file
    hostname: str  # the machine to dial (the config's HostName, else the alias)
    port: int
    user: str
    identity_files: list[str] = field(default_factory=list)
    identities_only: bool = False
    known_hosts: list[str] = field(default_factory=list)  # user files first, then global ones
    proxy_command: str | None = None

    @property
    def key_name(self) -> str:
        """How known_hosts names this host: ``host`` on port 22, ``[host]:port`` otherwise."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    @property
    def user_known_hosts(self) -> str:
        """The known_hosts file a trust command should append to."""
        for path in self.known_hosts:
            if path not in GLOBAL_KNOWN_HOSTS:
                return path
        return os.path.expanduser(DEFAULT_KNOWN_HOSTS[0])

    def trust_commands(self) -> str:
        """The commands that would trust this host's key, for error messages."""
        port = f"-p {self.port} " if self.port != 22 else ""
        file = _tilde(self.user_known_hosts)
        return (
            f"ssh-keyscan {port}{shlex.quote(self.hostname)} >> {file}  "
            f"(compare the fingerprint with the host's own `ssh-keygen -lf` first), "
            f"or connect once with: ssh {port}{shlex.quote(self.user)}@{shlex.quote(self.hostname)}"
        )


def load_config(path: str | os.PathLike | None) -> paramiko.SSHConfig:
    """The parsed config file; ``None`` means ``~/.ssh/config`` if it exists."""
    if path is None:
        default = os.path.expanduser(DEFAULT_CONFIG)
        if not os.path.isfile(default):
            return paramiko.SSHConfig()
        path = default
    path = os.path.expanduser(os.fspath(path))
    try:
        return paramiko.SSHConfig.from_path(path)
    except OSError as exc:
        raise InterfaceError(f"cannot read the ssh_config file {path!r}: {exc}") from exc
    except Exception as exc:  # paramiko's parse errors have no common base
        raise InterfaceError(
            f"cannot parse the ssh_config file {path!r}: {type(exc).__name__}: {exc}"
        ) from exc


def resolve(spec: str, config: paramiko.SSHConfig,
            known_hosts: list[str] | None = None) -> Target:
    """The :class:`Target` for one ``hosts`` entry. ``known_hosts`` overrides the config's."""
    if not isinstance(spec, str):
        raise InterfaceError(f"hosts holds strings like 'user@host:port', not {spec!r}")
    match = _SPEC.match(spec.strip())
    if not match:
        raise InterfaceError(
            f"host {spec!r} is not of the form [user@]host[:port] (IPv6: [user@][addr]:port)"
        )
    alias = match.group("v6") or match.group("host")
    try:
        options = config.lookup(alias)
    except Exception as exc:
        raise InterfaceError(
            f"looking up {alias!r} in the ssh_config failed: {type(exc).__name__}: {exc}"
        ) from exc
    port = int(match.group("port") or options.get("port", 22))
    if not 0 < port < 65536:
        raise InterfaceError(f"host {spec!r}: port {port} is out of range")
    user = match.group("user") or options.get("user") or getpass.getuser()
    home = os.path.expanduser("~")
    tokens = {"%d": home, "%u": getpass.getuser(), "%h": options["hostname"], "%r": user,
              "%p": str(port), "%n": alias, "%%": "%"}
    if known_hosts:
        user_files = [os.path.expanduser(os.fspath(p)) for p in known_hosts]
    elif "userknownhostsfile" in options:
        user_files = [_expand(p, tokens) for p in options["userknownhostsfile"].split()]
        user_files = [p for p in user_files if p != "/dev/null" and p.lower() != "none"]
    else:
        user_files = [os.path.expanduser(p) for p in DEFAULT_KNOWN_HOSTS]
    proxy = options.get("proxycommand")
    if proxy and proxy.lower() == "none":
        proxy = None
    return Target(
        name=spec.strip(),
        alias=alias,
        hostname=options["hostname"],
        port=port,
        user=user,
        identity_files=[os.path.expanduser(p) for p in options.get("identityfile", [])],
        identities_only=options.get("identitiesonly", "no").lower() == "yes",
        known_hosts=user_files + list(GLOBAL_KNOWN_HOSTS),
        proxy_command=proxy,
    )


def _expand(path: str, tokens: dict[str, str]) -> str:
    path = re.sub(r"%[dhupnr%]", lambda m: tokens[m.group(0)], path)
    return os.path.expanduser(path)


def _tilde(path: str) -> str:
    home = os.path.expanduser("~")
    if path.startswith(home + os.sep):
        return "~/" + shlex.quote(path[len(home) + 1 :])
    return shlex.quote(path)
