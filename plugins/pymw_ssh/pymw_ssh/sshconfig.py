"""Which machine a ``hosts`` entry means, read the way OpenSSH reads its config.

Where the OpenSSH client is installed, ``ssh -G`` itself resolves each host: ``Include``,
``Match``, ``Host`` patterns, the system-wide file and the tokens are then exactly what a
terminal's ``ssh`` would use. Without it, paramiko's parser reads the files (with
``Include`` inlined here) and only the keywords in :data:`HONOURED` are read. Either way
the entry's own user and port win, as ``ssh -l USER -p PORT`` would, and every
``ProxyJump`` hop is resolved as OpenSSH resolves it: by its own lookup, with the hops
before it as its ``ProxyJump``.
"""

from __future__ import annotations

import getpass
import glob
import hashlib
import os
import re
import shlex
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from typing import Any

import paramiko

from pymw_core.errors import InterfaceError

DEFAULT_CONFIG = "~/.ssh/config"
SYSTEM_CONFIG = "/etc/ssh/ssh_config"
DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
DEFAULT_IDENTITIES = ("~/.ssh/id_rsa", "~/.ssh/id_ecdsa", "~/.ssh/id_ed25519", "~/.ssh/id_dsa")
MAX_HOPS = 8  # OpenSSH has no limit; a ProxyJump loop must not recurse for ever

# The keywords PyMW reads (ssh -G's lower-case spelling).
HONOURED = (
    "hostname", "port", "user", "identityfile", "identitiesonly", "certificatefile",
    "userknownhostsfile", "globalknownhostsfile", "proxycommand", "proxyjump",
    "hostkeyalias", "checkhostip", "stricthostkeychecking", "hashknownhosts",
)
# Keywords that mean nothing without a terminal, forwarding or a prompt: PyMW never
# prompts, allocates no terminal and runs no local command, so these are ignored quietly.
NOT_APPLICABLE = (
    "host", "batchmode", "escapechar", "enableescapecommandline", "loglevel", "logverbose",
    "requesttty", "sessiontype", "stdinnull", "forkafterauthentication", "visualhostkey",
    "fingerprinthash", "numberofpasswordprompts", "passwordauthentication",
    "kbdinteractiveauthentication", "kbdinteractivedevices", "forwardx11",
    "forwardx11trusted", "forwardx11timeout", "xauthlocation", "syslogfacility",
    "permitlocalcommand", "localcommand", "clearallforwardings", "exitonforwardfailure",
    "gatewayports", "streamlocalbindmask", "streamlocalbindunlink", "permitremoteopen",
    "tunnel", "tunneldevice", "ipqos", "proxyusefdpass", "canonicaldomains",
    "canonicalizefallbacklocal", "canonicalizehostname", "canonicalizemaxdots",
    "canonicalizepermittedcnames", "controlmaster", "controlpath", "controlpersist",
    "addkeystoagent", "pubkeyauthentication", "securitykeyprovider", "enablesshkeysign",
    "updatehostkeys",  # PyMW never rewrites known_hosts from what a server offers
)
_SPEC = re.compile(
    r"^(?:(?P<user>[^@\s]+)@)?"  # user@
    r"(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:@\s\[\]/]+))"  # [v6 address] or host
    r"(?::(?P<port>\d+))?$"  # :port
)
_TOKEN = re.compile(r"%(.)")
_USER_OVERRIDE_KEYS = ("user", "port")  # what a hosts entry or a hop may say itself


@dataclass
class Target:
    """Everything needed to dial one host (or one jump host), after the config was applied."""

    name: str  # what the user wrote in ``hosts`` (or the hop): the name in messages
    alias: str  # the host part of it, looked up in the config file
    hostname: str  # the machine to dial (the config's HostName, else the alias)
    port: int
    user: str
    identity_files: list[str] = field(default_factory=list)
    identities_only: bool = False
    certificate_files: list[str] = field(default_factory=list)
    known_hosts: list[str] = field(default_factory=list)  # user files first, then global ones
    user_known_hosts_files: list[str] = field(default_factory=list)
    proxy_command: str | None = None
    via: Target | None = None  # the last ProxyJump hop: this host is dialled from there
    host_key_alias: str | None = None
    check_host_ip: bool = False
    strict: str = "ask"  # StrictHostKeyChecking: yes, ask, accept-new, no, off
    hash_known_hosts: bool = False
    unhonoured: list[str] = field(default_factory=list)  # config keywords PyMW ignores
    jumps: Any = field(default=None, repr=False, compare=False)  # the shared JumpPool

    @property
    def key_name(self) -> str:
        """How known_hosts names this host: HostKeyAlias, else ``host``/``[host]:port``."""
        if self.host_key_alias:
            return self.host_key_alias
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    @property
    def user_known_hosts(self) -> str:
        """The known_hosts file new keys go to (OpenSSH's first UserKnownHostsFile)."""
        if self.user_known_hosts_files:
            return self.user_known_hosts_files[0]
        for path in self.known_hosts:
            if path not in GLOBAL_KNOWN_HOSTS:
                return path
        return os.path.expanduser(DEFAULT_KNOWN_HOSTS[0])

    def hops(self) -> list[Target]:
        """The jump hosts in the order they are dialled (empty without ProxyJump)."""
        chain: list[Target] = []
        hop = self.via
        while hop is not None:
            chain.insert(0, hop)
            hop = hop.via
        return chain

    def connection_key(self) -> tuple:
        """Two targets with the same key can share one connection (a jump host's)."""
        return (self.user, self.hostname, self.port, self.host_key_alias, self.proxy_command,
                tuple(self.identity_files), tuple(self.certificate_files),
                self.via.connection_key() if self.via else None)

    def trust_commands(self) -> str:
        """The commands that would trust this host's key, for error messages."""
        port = f"-p {self.port} " if self.port != 22 else ""
        file = _tilde(self.user_known_hosts)
        jump = ""
        if self.via is not None:
            jump = "-J " + ",".join(shlex.quote(h.name) for h in self.hops()) + " "
        if self.via is None and self.proxy_command is None and not self.host_key_alias:
            scan = (f"ssh-keyscan {port}{shlex.quote(self.hostname)} >> {file}  (compare the "
                    "fingerprint with the host's own `ssh-keygen -lf` first), or ")
        else:  # ssh-keyscan can neither jump nor store under an alias
            scan = ""
        return (f"{scan}connect once with: ssh {jump}{port}"
                f"{shlex.quote(self.user)}@{shlex.quote(self.hostname)}"
                + (f" -o HostKeyAlias={shlex.quote(self.host_key_alias)}"
                   if self.host_key_alias else ""))


class Resolver:
    """Resolves ``hosts`` entries against one config; ``openssh``: use ``ssh -G`` (default:
    when the client is installed). ``known_hosts`` replaces every host's user files."""

    def __init__(self, path: str | os.PathLike | None = None,
                 known_hosts: list[str] | None = None, openssh: bool | None = None,
                 system_config: str | None = SYSTEM_CONFIG) -> None:
        self.path = None if path is None else os.path.expanduser(os.fspath(path))
        if self.path is not None and not os.path.isfile(self.path):
            raise InterfaceError(f"cannot read the ssh_config file {self.path!r}: no such file")
        self.known_hosts = ([os.path.expanduser(os.fspath(p)) for p in known_hosts]
                            if known_hosts else None)
        self.ssh = shutil.which("ssh") if openssh is not False else None
        if openssh and self.ssh is None:
            raise InterfaceError("the OpenSSH client (ssh) is not installed")
        self.system_config = system_config
        self._paramiko: paramiko.SSHConfig | None = None
        self._baseline: dict[str, list[str]] | None = None
        self._cache: dict[tuple, dict[str, list[str]]] = {}
        self.jumps: Any = None  # set by the interface: the pool every Target shares

    @property
    def backend(self) -> str:
        return "openssh" if self.ssh else "paramiko"

    def resolve(self, spec: str, jump: str | None = None, depth: int = 0,
                seen: tuple[str, ...] = ()) -> Target:
        """The :class:`Target` for one ``hosts`` entry (or ProxyJump hop)."""
        if not isinstance(spec, str):
            raise InterfaceError(f"hosts holds strings like 'user@host:port', not {spec!r}")
        user, alias, port = parse_spec(spec)
        if depth > MAX_HOPS or (depth and spec in seen):
            raise InterfaceError(
                f"host {seen[0] if seen else spec}: its ProxyJump chain "
                f"({' -> '.join((*seen, spec))}) loops or is longer than {MAX_HOPS} hops")
        options = self._lookup(alias, user, port, jump)
        user = user or _first(options, "user") or getpass.getuser()
        port = port or int(_first(options, "port") or 22)
        if not 0 < port < 65536:
            raise InterfaceError(f"host {spec!r}: port {port} is out of range")
        hostname = _first(options, "hostname") or alias
        proxyjump = jump if jump is not None else _first(options, "proxyjump")
        proxy = _first(options, "proxycommand")
        if proxyjump and proxyjump.lower() == "none":
            proxyjump = None
        if proxy and proxy.lower() == "none":
            proxy = None
        tokens = self._tokens(alias, hostname, port, user, proxyjump or "",
                              _first(options, "hostkeyalias"))
        expand = self.ssh is not None  # paramiko expanded these itself
        identities = [_expand(p, tokens) if expand else os.path.expanduser(p)
                      for p in options.get("identityfile", [])]
        certificates = [_expand(p, tokens) for p in options.get("certificatefile", [])]
        if self.known_hosts:
            user_files = list(self.known_hosts)
        else:
            user_files = [_expand(p, tokens) for p in
                          " ".join(options.get("userknownhostsfile", [])).split()
                          or DEFAULT_KNOWN_HOSTS]
        user_files = [p for p in user_files if p != "/dev/null" and p.lower() != "none"]
        global_files = [_expand(p, tokens) for p in
                        " ".join(options.get("globalknownhostsfile", [])).split()
                        or GLOBAL_KNOWN_HOSTS]
        via = None
        if proxyjump:
            hops = [_hop_spec(h) for h in proxyjump.split(",") if h.strip()]
            # OpenSSH: ssh -J h1,...,h(n-1) -W host:port hn; hn's own config gives the rest
            rest = ",".join(hops[:-1]) or None
            via = self.resolve(hops[-1], jump=rest, depth=depth + 1, seen=(*seen, spec))
            proxy = None
        elif proxy and expand:
            proxy = _expand(proxy, tokens, path=False)
        strict = (_first(options, "stricthostkeychecking") or "ask").lower()
        target = Target(
            name=spec.strip(),
            alias=alias,
            hostname=hostname,
            port=port,
            user=user,
            identity_files=identities,
            identities_only=_yes(_first(options, "identitiesonly")),
            certificate_files=certificates,
            known_hosts=user_files + [p for p in global_files if p not in user_files],
            user_known_hosts_files=user_files,
            proxy_command=proxy,
            via=via,
            host_key_alias=_first(options, "hostkeyalias"),
            check_host_ip=_yes(_first(options, "checkhostip")),
            strict={"true": "yes", "false": "no"}.get(strict, strict),
            hash_known_hosts=_yes(_first(options, "hashknownhosts")),
            unhonoured=self._unhonoured(options),
            jumps=self.jumps,
        )
        return target

    # -- OpenSSH ----------------------------------------------------------------------------

    def _lookup(self, alias: str, user: str | None, port: int | None,
                jump: str | None) -> dict[str, list[str]]:
        if self.ssh is None:
            return self._paramiko_lookup(alias, user, port)
        key = (alias, user, port, jump)
        if key not in self._cache:  # a jump host behind many hosts is looked up once
            self._cache[key] = self._openssh_lookup(alias, user, port, jump)
        return self._cache[key]

    def _openssh_lookup(self, alias: str, user: str | None, port: int | None,
                        jump: str | None) -> dict[str, list[str]]:
        assert self.ssh is not None
        argv = [self.ssh, "-G"]
        if self.path is not None:
            argv += ["-F", self.path]
        if user:
            argv += ["-l", user]
        if port:
            argv += ["-p", str(port)]
        if jump:
            argv += ["-J", jump]
        return self._run([*argv, "--", alias], alias)

    def _run(self, argv: list[str], alias: str) -> dict[str, list[str]]:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InterfaceError(f"host {alias}: `{shlex.join(argv)}` failed: {exc}") from exc
        if done.returncode != 0:
            why = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
            raise InterfaceError(f"host {alias}: OpenSSH cannot read the ssh_config "
                                 f"(`{shlex.join(argv)}`): {why}")
        options: dict[str, list[str]] = {}
        for line in done.stdout.splitlines():
            key, _, value = line.partition(" ")
            if key:
                options.setdefault(key.lower(), []).append(value.strip())
        return options

    def _baseline_options(self) -> dict[str, list[str]]:
        """What OpenSSH says with no config at all: the defaults to tell "used" from."""
        if self._baseline is None:
            if self.ssh is not None:
                self._baseline = self._run([self.ssh, "-G", "-F", "/dev/null", "--",
                                            "pymw-baseline.invalid"], "pymw-baseline")
            else:
                self._baseline = {}
        return self._baseline

    def _unhonoured(self, options: dict[str, list[str]]) -> list[str]:
        """The keywords this host's config sets that PyMW does not honour."""
        if self.ssh is None:  # paramiko returns only what the files set
            return sorted(k for k in options
                          if k not in HONOURED and k not in NOT_APPLICABLE)
        base = self._baseline_options()
        return sorted(k for k, v in options.items()
                      if k not in HONOURED and k not in NOT_APPLICABLE and base.get(k) != v)

    # -- paramiko (no OpenSSH client) -------------------------------------------------------

    def _paramiko_lookup(self, alias: str, user: str | None,
                         port: int | None) -> dict[str, list[str]]:
        if self._paramiko is None:
            files = [self.path] if self.path is not None else [
                p for p in (os.path.expanduser(DEFAULT_CONFIG), self.system_config)
                if p and os.path.isfile(p)]
            text = "".join(_inline_includes(p, 0, p == self.system_config) for p in files)
            try:
                self._paramiko = paramiko.SSHConfig.from_text(text)
            except Exception as exc:  # paramiko's parse errors have no common base
                raise InterfaceError(f"cannot parse the ssh_config ({', '.join(files)}): "
                                     f"{type(exc).__name__}: {exc}") from exc
        try:
            found = self._paramiko.lookup(alias)
        except Exception as exc:
            raise InterfaceError(f"looking up {alias!r} in the ssh_config failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
        options: dict[str, list[str]] = {}
        for key, value in found.items():
            options[key] = list(value) if isinstance(value, list) else [str(value)]
        if user:
            options["user"] = [user]
        if port:
            options["port"] = [str(port)]
        if "identityfile" not in options:
            options["identityfile"] = list(DEFAULT_IDENTITIES)
        return options

    def _tokens(self, alias: str, hostname: str, port: int, user: str, jump: str,
                key_alias: str | None) -> dict[str, str]:
        local = socket.gethostname()
        me = getpass.getuser()
        conn = hashlib.sha1(f"{local}{hostname}{port}{user}{jump}".encode()).hexdigest()
        return {"%": "%", "d": os.path.expanduser("~"), "h": hostname, "p": str(port),
                "r": user, "n": alias, "u": me, "l": local, "L": local.split(".")[0],
                "i": str(os.getuid()), "k": key_alias or alias, "j": jump, "C": conn}


def parse_spec(spec: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` (or ``[user@][v6]:port``) as (user, host, port)."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise InterfaceError(
            f"host {spec!r} is not of the form [user@]host[:port] (IPv6: [user@][addr]:port)"
        )
    port = match.group("port")
    return match.group("user"), match.group("v6") or match.group("host"), (
        int(port) if port else None)


def load_config(path: str | os.PathLike | None) -> Resolver:
    """The resolver for one config file; ``None`` means what ``ssh`` reads by default."""
    return Resolver(path)


def resolve(spec: str, config: Resolver, known_hosts: list[str] | None = None) -> Target:
    """The :class:`Target` for one ``hosts`` entry (kept for callers of the old API)."""
    if known_hosts:
        config.known_hosts = [os.path.expanduser(os.fspath(p)) for p in known_hosts]
    return config.resolve(spec)


def _hop_spec(hop: str) -> str:
    hop = hop.strip()
    if hop.startswith("ssh://"):
        hop = hop[len("ssh://"):].rstrip("/")
    return hop


def _first(options: dict[str, list[str]], key: str) -> str | None:
    values = options.get(key)
    return values[0] if values else None


def _yes(value: str | None) -> bool:
    return (value or "").lower() in ("yes", "true")


def _expand(text: str, tokens: dict[str, str], path: bool = True) -> str:
    def one(match: re.Match) -> str:
        if match.group(1) not in tokens:
            raise InterfaceError(f"ssh_config value {text!r}: unknown token %{match.group(1)}")
        return tokens[match.group(1)]

    text = _TOKEN.sub(one, text)
    return os.path.expanduser(text) if path else text


def _inline_includes(path: str, depth: int, system: bool = False) -> str:
    """The file's text with each ``Include`` replaced by the files it names (for paramiko).

    As in OpenSSH, a relative name is under ``~/.ssh`` in a user's file (``-F`` ones too)
    and under ``/etc/ssh`` in the system-wide one.
    """
    if depth > 16:
        raise InterfaceError(f"ssh_config {path}: Include nests more than 16 deep")
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise InterfaceError(f"cannot read the ssh_config file {path!r}: {exc}") from exc
    base = "/etc/ssh" if system else os.path.expanduser("~/.ssh")
    out = []
    for line in lines:
        words = line.strip().split(None, 1)
        if words and words[0].lower() == "include" and len(words) > 1:
            for pattern in shlex.split(words[1]):
                pattern = os.path.expanduser(pattern)
                if not os.path.isabs(pattern):
                    pattern = os.path.join(base, pattern)
                for name in sorted(glob.glob(pattern)):
                    out.append(_inline_includes(name, depth + 1, system))
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def _tilde(path: str) -> str:
    home = os.path.expanduser("~")
    if path.startswith(home + os.sep):
        return "~/" + shlex.quote(path[len(home) + 1 :])
    return shlex.quote(path)
