"""Host key verification as OpenSSH does it, against known_hosts and nothing else.

The key is looked up under ``HostKeyAlias`` when the config sets one, else under
``host`` (``[host]:port`` off port 22). An unknown key is refused with the command that
would trust it, unless the config says ``StrictHostKeyChecking accept-new``: then it is
appended to the user's first known_hosts file, as OpenSSH appends it, and a warning says
so. ``no``/``off`` are refused all the same. ``CheckHostIP yes`` also checks (and records)
the key under the address dialled, for direct connections to non-loopback addresses.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from typing import Any

import paramiko

from pymw_ssh.sshconfig import Target

log = logging.getLogger("pymw.ssh")
_WRITE_LOCK = threading.Lock()  # appends to known_hosts, from many hosts' threads


class HostKeyError(Exception):
    """The host's key is unknown, changed, or unreadable: a permanent refusal."""


def load(target: Target) -> paramiko.HostKeys:
    """Every known_hosts file of ``target`` that exists, read-only."""
    keys = paramiko.HostKeys()
    for path in target.known_hosts:
        if os.path.isfile(path):
            try:
                keys.load(path)
            except (OSError, paramiko.SSHException, ValueError) as exc:
                raise HostKeyError(f"cannot read known_hosts {path}: {exc}") from exc
    return keys


def preferred_types(target: Target, keys: paramiko.HostKeys) -> list[str]:
    """The key types known for this host, to offer first (OpenSSH does the same)."""
    known: Any = keys.lookup(target.key_name) or {}
    types: list[str] = []
    for kind in known:
        types += ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] if kind == "ssh-rsa" else [kind]
    return types


def verify(target: Target, key: paramiko.PKey, peer: str | None) -> None:
    """Accept ``key`` for ``target`` or raise :class:`HostKeyError`. ``peer``: the address
    dialled (None through a proxy or jump host)."""
    keys = load(target)
    name = target.key_name
    status = _status(keys, name, key)
    if status == "changed":
        expected = keys.lookup(name)[key.get_name()]  # type: ignore[index]
        raise HostKeyError(
            f"its key CHANGED: it offered {key.get_name()} {key.fingerprint}, known_hosts "
            f"says {expected.fingerprint} for {name}. Someone may be intercepting the "
            "connection, or the host was reinstalled. Only if you know the change is "
            f"legitimate: ssh-keygen -R '{name}' -f {target.user_known_hosts}, then trust the "
            f"new key: {target.trust_commands()}")
    if status == "new":
        if target.strict != "accept-new":
            files = ", ".join(p for p in target.known_hosts if os.path.exists(p)) or "none exist"
            why = ""
            if target.strict in ("no", "off"):
                why = (" (the ssh_config's StrictHostKeyChecking "
                       f"{target.strict} is not honoured: it would trust any key, an "
                       "interceptor's too; accept-new is)")
            raise HostKeyError(
                f"its key ({key.get_name()} {key.fingerprint}) is not in known_hosts as {name} "
                f"(files read: {files}); PyMW never trusts an unknown host{why}. To trust "
                f"it: {target.trust_commands()}")
        _append(target, name, key, "StrictHostKeyChecking accept-new")
    ip = _ip_name(target, peer)
    if ip is None:
        return
    ip_status = _status(keys, ip, key)
    if ip_status == "changed":
        raise HostKeyError(
            f"the {key.get_name()} key of {name} differs from the key known_hosts holds for "
            f"its address {ip} (CheckHostIP): the address may have been taken over, or DNS "
            f"lies. If the address legitimately moved: ssh-keygen -R '{ip}' -f "
            f"{target.user_known_hosts}")
    if ip_status == "new":
        _append(target, ip, key, "CheckHostIP yes")


def _status(keys: paramiko.HostKeys, name: str, key: paramiko.PKey) -> str:
    known = keys.lookup(name)
    if not known or key.get_name() not in known:
        return "new"
    return "ok" if known[key.get_name()] == key else "changed"


def _ip_name(target: Target, peer: str | None) -> str | None:
    """The name CheckHostIP looks the address up by, or None when OpenSSH would not check."""
    if not target.check_host_ip or peer is None or target.via or target.proxy_command:
        return None
    try:
        if ipaddress.ip_address(peer.split("%")[0]).is_loopback or peer == target.hostname:
            return None
    except ValueError:
        return None
    return peer if target.port == 22 else f"[{peer}]:{target.port}"


def _append(target: Target, name: str, key: paramiko.PKey, why: str) -> None:
    """Add ``name key`` to the user's known_hosts (hashed under HashKnownHosts yes)."""
    path = target.user_known_hosts
    with _WRITE_LOCK:
        current = paramiko.HostKeys()
        if os.path.isfile(path):
            try:
                current.load(path)
            except (OSError, paramiko.SSHException, ValueError):
                pass
        if _status(current, name, key) == "ok":  # another host's thread added it first
            return
        entry = paramiko.HostKeys.hash_host(name) if target.hash_known_hosts else name
        line = f"{entry} {key.get_name()} {key.get_base64()}\n"
        try:
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as fh:
                fh.write(line)
        except OSError as exc:
            raise HostKeyError(f"its key is new and {why} says to add it, but {path} cannot "
                               f"be written: {exc}") from exc
    log.warning("host %s: Permanently added '%s' (%s %s) to the list of known hosts (%s), "
                "as the ssh_config's %s says", target.name, name, key.get_name(),
                key.fingerprint, path, why)
