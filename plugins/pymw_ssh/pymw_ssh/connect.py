"""Opening one verified, authenticated SSH connection, and telling when it stopped answering.

Host keys are checked against known_hosts (:mod:`pymw_ssh.hostkeys`). Authentication is
what ``ssh`` does with the same config: the config's ``IdentityFile``s with their
certificates, then the agent. Jump hosts (``ProxyJump``) are connected once each and
shared: a host behind one travels in a direct-tcpip channel of the jump host's connection.
Every failure becomes a :class:`HostError` that says, in words, what to do about it.
"""

from __future__ import annotations

import base64
import logging
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import paramiko
from paramiko.pkey import PublicBlob

from pymw_ssh import hostkeys
from pymw_ssh.sshconfig import Target

log = logging.getLogger("pymw.ssh")

HEARTBEAT_REQUEST = "keepalive@openssh.com"  # OpenSSH answers it (with a refusal): a reply
# AES-GCM authenticates inside the cipher: paramiko then skips its per-packet HMAC and the
# byte-by-byte MAC comparison it does in Python, a third of its cost per small packet.
_AEAD_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


class HostError(Exception):
    """A host cannot be used. ``permanent``: trying again will not help (a key, a version)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Connection(paramiko.SSHClient):
    """An authenticated connection, as an ``SSHClient`` (``get_transport``, ``open_sftp``,
    ``close``). Closing it also lets go of the jump host connection it travels through."""

    def __init__(self, transport: paramiko.Transport, release: Callable[[], None] | None,
                 ) -> None:
        super().__init__()
        self._transport = transport
        self._release = release

    def close(self) -> None:
        try:
            super().close()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


def open_client(target: Target, timeout: float) -> paramiko.SSHClient:
    """A connected, host-key-verified, authenticated client; raises :class:`HostError`.

    Dialled directly, through ``ProxyCommand``, or over a direct-tcpip channel of the
    (shared) connection to the last ``ProxyJump`` hop.
    """
    release = None
    peer = None
    try:
        if target.via is not None:
            sock, release = _through_jump(target, timeout)
        elif target.proxy_command:
            sock = paramiko.ProxyCommand(
                shlex.join(["/bin/sh", "-c", "exec " + target.proxy_command]))
        else:
            sock = socket.create_connection((target.hostname, target.port), timeout=timeout)
            peer = sock.getpeername()[0]
    except HostError:
        raise
    except BaseException as exc:
        raise _explain(target, exc, timeout) from exc
    transport = None
    try:
        transport = _transport(sock)
        transport.banner_timeout = timeout
        transport.auth_timeout = timeout
        transport.channel_timeout = timeout
        transport.handshake_timeout = timeout
        try:
            types = hostkeys.preferred_types(target, hostkeys.load(target))
        except hostkeys.HostKeyError as exc:
            raise HostError(f"host {target.name}: {exc}", permanent=True) from exc
        if types:
            options = transport.get_security_options()
            first = [t for t in types if t in options.key_types]
            options.key_types = tuple(first + [t for t in options.key_types if t not in first])
        transport.start_client(timeout=timeout)
        try:
            hostkeys.verify(target, transport.get_remote_server_key(), peer)
        except hostkeys.HostKeyError as exc:
            raise HostError(f"host {target.name}: {exc}", permanent=True) from exc
        authenticate(transport, target)
        if not transport.is_active():  # pragma: no cover - paramiko raised
            raise HostError(f"host {target.name}: the connection closed right after login")
    except BaseException as exc:
        if transport is not None:
            transport.close()
        else:
            sock.close()
        if release is not None:
            release()
        if isinstance(exc, HostError):
            raise
        raise _explain(target, exc, timeout) from exc
    return Connection(transport, release)


def _through_jump(target: Target, timeout: float) -> tuple[Any, Callable[[], None]]:
    """A direct-tcpip channel to ``target`` from its jump host (connected on first use)."""
    via = target.via
    assert via is not None
    pool = target.jumps if target.jumps is not None else _jumps
    try:
        client, release = pool.acquire(via, timeout)
    except HostError as exc:
        text = str(exc)
        prefix = f"host {via.name}: "
        raise HostError(f"host {target.name}: through jump host {via.name}: "
                        f"{text[len(prefix):] if text.startswith(prefix) else text}",
                        permanent=exc.permanent) from exc
    try:
        transport = client.get_transport()
        if transport is None:
            raise EOFError("the jump host's connection is closed")
        channel = transport.open_channel(
            "direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0), timeout=timeout)
    except BaseException as exc:
        release()
        if isinstance(exc, paramiko.ChannelException):
            raise HostError(f"host {target.name}: jump host {via.name} could not connect to "
                            f"{target.hostname}:{target.port} ({exc.text})") from exc
        raise HostError(f"host {target.name}: jump host {via.name} did not open a channel "
                        f"to {target.hostname}:{target.port}: {type(exc).__name__}: {exc}",
                        ) from exc
    return channel, release


class JumpPool:
    """One connection per jump host, shared by every host behind it, closed with the last.

    A connection that died is replaced on the next acquire; connecting to one jump host
    happens once however many hosts wait for it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple, _Jump] = {}

    def acquire(self, via: Target, timeout: float) -> tuple[paramiko.SSHClient, Callable]:
        key = via.connection_key()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Jump()
            entry.users += 1
        try:
            with entry.lock:  # the first caller connects; the others wait for it
                current = entry.client
                transport = current.get_transport() if current is not None else None
                if current is None or transport is None or not transport.is_active():
                    entry.client = None
                    if current is not None:
                        current.close()
                    current = entry.client = open_client(via, timeout)
                client = current
        except BaseException:
            self._release(key, entry)
            raise
        return client, lambda: self._release(key, entry)

    def _release(self, key: tuple, entry: _Jump) -> None:
        with self._lock:
            entry.users -= 1
            if entry.users > 0:
                return
            if self._entries.get(key) is entry:
                del self._entries[key]
        with entry.lock:
            client, entry.client = entry.client, None
        if client is not None:
            client.close()

    def close(self) -> None:
        """Close every jump connection (the hosts behind them lose theirs)."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            client, entry.client = entry.client, None
            if client is not None:
                client.close()


class _Jump:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.client: paramiko.SSHClient | None = None


_jumps = JumpPool()  # for targets made without an interface's pool


def authenticate(transport: paramiko.Transport, target: Target) -> None:
    """Log in as OpenSSH would with this config: each identity file (with its certificate:
    a ``CertificateFile`` whose key matches, else ``<key>-cert.pub``), then the agent's keys
    unless ``IdentitiesOnly``. Keys that need a passphrase must be in the agent: PyMW never
    prompts, and the refusal names them with the ``ssh-add`` command."""
    tried: list[str] = []
    locked: list[str] = []
    for path in target.identity_files:
        if not os.path.isfile(path):
            continue
        try:
            key = paramiko.PKey.from_path(path)
        except Exception as exc:
            # paramiko 5 lets cryptography's TypeError through for a locked key (older
            # versions raised PasswordRequiredException): the file itself says which.
            if isinstance(exc, paramiko.PasswordRequiredException) or _needs_passphrase(path):
                locked.append(path)
            else:
                log.debug("host %s: cannot load key %s: %s", target.name, path, exc)
            continue
        for cert in target.certificate_files:
            if os.path.isfile(cert) and _certifies(cert, key):
                key.load_certificate(cert)
                break
        label = path + (" (with certificate)" if key.public_blob else "")
        if _try(transport, target.user, key):
            return
        tried.append(label)
        if key.public_blob is not None:  # OpenSSH offers the plain key after the certificate
            key.public_blob = None
            if _try(transport, target.user, key):
                return
    if not (target.identities_only and tried):
        try:
            agent_keys = paramiko.Agent().get_keys()
        except Exception:  # no agent
            agent_keys = ()
        for key in agent_keys:
            if _try(transport, target.user, key):
                return
        if agent_keys:
            tried.append(f"{len(agent_keys)} key(s) of the ssh-agent")
    if not tried:
        tried.append("no key" if locked else "no key (none of the identity files exists)")
    because = ""
    if locked:
        they, need = ("they", "need") if len(locked) > 1 else ("it", "needs")
        because = (f"; not tried, as {they} {need} a passphrase and PyMW never prompts: "
                   f"{', '.join(locked)} (load {'them' if they == 'they' else 'it'} into "
                   f"ssh-agent: ssh-add {shlex.join(locked)})")
    raise paramiko.AuthenticationException("tried " + ", ".join(tried) + because)


def _needs_passphrase(path: str) -> bool:
    """True when the private key file at ``path`` is encrypted: OpenSSH's format names
    its cipher (``none`` when plain), PEM says ``ENCRYPTED`` in its header."""
    try:
        with open(path, "rb") as fh:
            text = fh.read(1 << 20)
    except OSError:
        return False
    if b"-----BEGIN OPENSSH PRIVATE KEY-----" in text:
        body = text.split(b"-----BEGIN OPENSSH PRIVATE KEY-----", 1)[1]
        body = body.split(b"-----END", 1)[0]
        try:
            blob = base64.b64decode(b"".join(body.split()))
        except ValueError:
            return False
        magic = b"openssh-key-v1\0"
        if not blob.startswith(magic) or len(blob) < len(magic) + 4:
            return False
        size = int.from_bytes(blob[len(magic):len(magic) + 4], "big")
        return blob[len(magic) + 4:len(magic) + 4 + size] != b"none"
    return b"Proc-Type: 4,ENCRYPTED" in text or b"BEGIN ENCRYPTED PRIVATE KEY" in text


def _try(transport: paramiko.Transport, user: str, key: paramiko.PKey) -> bool:
    try:
        remaining = transport.auth_publickey(user, key)
    except paramiko.AuthenticationException:
        return False
    if remaining:  # the server wants another factor as well
        raise paramiko.AuthenticationException(
            f"the server asks for more after the key ({', '.join(remaining)}); PyMW "
            "logs in with keys only")
    return transport.is_authenticated()


def _certifies(path: str, key: paramiko.PKey) -> bool:
    """True when the OpenSSH certificate in ``path`` is for ``key``'s public key."""
    try:
        blob = PublicBlob.from_file(path)
        cert = paramiko.Message(blob.key_blob)
        cert.get_text()
        cert.get_binary()  # the nonce
        plain = paramiko.Message(key.asbytes())
        plain.get_text()
        return cert.get_remainder().startswith(plain.get_remainder())
    except Exception:
        return False


def _transport(sock, **kwargs) -> paramiko.Transport:
    """A transport that offers AES-GCM first (servers without it pick the next cipher)."""
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    first = [c for c in _AEAD_CIPHERS if c in options.ciphers]
    options.ciphers = tuple(first + [c for c in options.ciphers if c not in first])
    return transport


def _explain(target: Target, exc: BaseException, timeout: float) -> HostError:
    where = f"{target.hostname}:{target.port}"
    name = target.name
    if isinstance(exc, paramiko.AuthenticationException):
        how = f"-p {target.port} " if target.port != 22 else ""
        if target.via is not None:
            how = "-J " + ",".join(h.name for h in target.hops()) + " " + how
        return HostError(
            f"host {name}: {where} refused to log in {target.user} ({exc}); check that "
            f"`ssh {how}{target.user}@{target.hostname}` works without a password",
            permanent=True,
        )
    if isinstance(exc, socket.gaierror):
        return HostError(f"host {name}: cannot resolve {target.hostname!r}: {exc}",
                         permanent=True)
    if isinstance(exc, (ConnectionRefusedError, paramiko.ssh_exception.NoValidConnectionsError)):
        return HostError(f"host {name}: nothing accepts connections at {where} "
                         "(connection refused)")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return HostError(f"host {name}: {where} did not answer within {timeout} s")
    if isinstance(exc, paramiko.SSHException) and "banner" in str(exc).lower():
        return HostError(
            f"host {name}: {where} accepted the connection but did not speak SSH within "
            f"{timeout} s ({exc})"
        )
    if isinstance(exc, paramiko.SSHException) and "no existing session" in str(exc).lower():
        return HostError(f"host {name}: {where} did not finish the SSH handshake within "
                         f"{timeout} s")
    if isinstance(exc, (OSError, EOFError, paramiko.SSHException)):
        return HostError(f"host {name}: cannot connect to {where}: {type(exc).__name__}: {exc}")
    if isinstance(exc, Exception):
        return HostError(f"host {name}: connecting to {where} failed: "
                         f"{type(exc).__name__}: {exc}")
    raise exc  # KeyboardInterrupt and friends are not a host's fault


class Heartbeat:
    """Asks the server for a reply every ``interval`` s on a helper thread.

    ``global_request`` has no timeout of its own, so the thread only records when the
    pending request was sent; :meth:`silent_for` tells how long an answer is overdue.
    A frozen host still has its TCP segments acknowledged by the kernel: only a
    request that needs the SSH server's own reply notices it.
    """

    def __init__(self, transport: paramiko.Transport, interval: float, name: str) -> None:
        self._transport = transport
        self._interval = interval
        self._stop = threading.Event()
        self._sent: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"pymw-heartbeat-{name}",
                                        daemon=True)
        self._thread.start()

    def silent_for(self) -> float:
        """Seconds the current request has waited for its answer (0 if none is pending)."""
        sent = self._sent
        return 0.0 if sent is None else time.monotonic() - sent

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        transport = self._transport
        while not self._stop.wait(self._interval):
            self._sent = time.monotonic()
            try:
                transport.global_request(HEARTBEAT_REQUEST, wait=True)
            except Exception:  # the transport broke: its channels report that
                return
            self._sent = None
            if not transport.is_active():
                return
