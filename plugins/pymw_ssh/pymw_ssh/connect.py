"""Opening one verified, authenticated SSH connection, and telling when it stopped answering.

Host keys are checked against known_hosts and nothing else: an unknown or changed key
is refused with the command that would trust it. Authentication is what ``ssh`` does
with the same config: the agent, the config's ``IdentityFile``s, the default keys.
Every failure becomes a :class:`HostError` that says, in words, what to do about it.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import paramiko

from pymw_ssh.sshconfig import Target

HEARTBEAT_REQUEST = "keepalive@openssh.com"  # OpenSSH answers it (with a refusal): a reply
# AES-GCM authenticates inside the cipher: paramiko then skips its per-packet HMAC and the
# byte-by-byte MAC comparison it does in Python, a third of its cost per small packet.
_AEAD_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


class HostError(Exception):
    """A host cannot be used. ``permanent``: trying again will not help (a key, a version)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class _RefuseUnknownHost(paramiko.MissingHostKeyPolicy):
    """Never trust a key that known_hosts does not hold."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def missing_host_key(self, client, hostname, key):
        files = ", ".join(p for p in self.target.known_hosts if os.path.exists(p)) or "none exist"
        raise HostError(
            f"host {self.target.name}: its key ({key.get_name()} {key.fingerprint}) is not "
            f"in known_hosts as {hostname} (files read: {files}); PyMW never trusts an "
            f"unknown host. To trust it: {self.target.trust_commands()}",
            permanent=True,
        )


def open_client(target: Target, timeout: float) -> paramiko.SSHClient:
    """A connected, host-key-verified, authenticated client; raises :class:`HostError`."""
    client = paramiko.SSHClient()
    for path in target.known_hosts:
        if os.path.isfile(path):
            try:
                client.load_system_host_keys(path)  # read-only: never written back
            except (OSError, paramiko.SSHException) as exc:
                client.close()
                raise HostError(f"host {target.name}: cannot read known_hosts {path}: {exc}",
                                permanent=True) from exc
    client.set_missing_host_key_policy(_RefuseUnknownHost(target))
    keys = [p for p in target.identity_files if os.path.isfile(p)]
    only = target.identities_only and bool(keys)
    sock = paramiko.ProxyCommand(target.proxy_command) if target.proxy_command else None
    try:
        client.connect(
            target.hostname,
            port=target.port,
            username=target.user,
            key_filename=keys or None,
            allow_agent=not only,
            look_for_keys=not only,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
            sock=sock,
            transport_factory=_transport,
        )
    except HostError:
        client.close()
        raise
    except BaseException as exc:
        client.close()
        raise _explain(target, exc, timeout) from exc
    transport = client.get_transport()
    if transport is None or not transport.is_active():  # pragma: no cover - paramiko raised
        client.close()
        raise HostError(f"host {target.name}: the connection closed right after login")
    return client


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
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostError(
            f"host {name}: its key CHANGED: it offered {exc.key.get_name()} "
            f"{exc.key.fingerprint}, known_hosts says {exc.expected_key.fingerprint} for "
            f"{target.key_name}. Someone may be intercepting the connection, or the host was "
            f"reinstalled. Only if you know the change is legitimate: "
            f"ssh-keygen -R '{target.key_name}' -f {target.user_known_hosts}, then trust the "
            f"new key: {target.trust_commands()}",
            permanent=True,
        )
    if isinstance(exc, paramiko.AuthenticationException):
        tried = ", ".join(target.identity_files) or "the default keys"
        agent = "" if target.identities_only else " and the ssh-agent's keys"
        return HostError(
            f"host {name}: {where} refused to log in {target.user} with {tried}{agent} "
            f"({exc}); check that `ssh -p {target.port} {target.user}@{target.hostname}` "
            "works without a password",
            permanent=True,
        )
    if isinstance(exc, socket.gaierror):
        return HostError(f"host {name}: cannot resolve {target.hostname!r}: {exc}",
                         permanent=True)
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
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
