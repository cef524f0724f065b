"""Private OpenSSH servers on 127.0.0.1 for the ssh interface's tests and benchmarks.

Each :class:`SSHServer` is one "host": its own ``sshd`` on a free port with a throwaway
host key. :class:`SSHLab` makes the shared client key, the ``known_hosts`` file that
trusts every server it started and an ``ssh_config`` file with one alias per server
(``host1``, ``host2``...), as a user's ``~/.ssh`` would have. Recipe and pitfalls:
shared/recipes/sshd-loopback.md.

CLI: ``python tests/ssh/sshd.py`` starts two servers, prints the ssh_config and waits.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from pymw_testing import read_line

SSHD = "/usr/sbin/sshd"  # sshd refuses to start from a relative path


def sshd_available() -> bool:
    """True when OpenSSH's server and ssh-keygen are installed."""
    return os.path.isfile(SSHD) and shutil.which("ssh-keygen") is not None


def free_port() -> int:
    """A TCP port nothing listens on right now (nothing will, unless someone binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True
    )


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it, read from /proc before anything is killed."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


class SSHServer:
    """One sshd on 127.0.0.1:``port``, configured as the recipe says."""

    def __init__(self, directory: Path, name: str, authorized_keys: Path,
                 max_sessions: int = 10, netns: Netns | None = None,
                 address: str = "127.0.0.1", extra: str = "") -> None:
        self.dir = directory
        self.name = name
        self.port = free_port()  # in a namespace of its own any port is free
        self.authorized_keys = authorized_keys
        self.max_sessions = max_sessions
        self.netns = netns
        self.address = address
        self.extra = extra
        self.host_key = directory / "host_key"
        self.process: subprocess.Popen | None = None

    @property
    def key(self) -> str:
        return " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])

    @property
    def known_hosts_line(self) -> str:
        return f"[{self.address}]:{self.port} {self.key}\n"

    def write_config(self) -> Path:
        config = self.dir / "sshd_config"
        config.write_text(
            f"Port {self.port}\n"
            f"ListenAddress {self.address}\n"
            f"HostKey {self.host_key}\n"
            f"PidFile {self.dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.authorized_keys}\n"
            "StrictModes no\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            f"MaxSessions {self.max_sessions}\n"
            "Subsystem sftp internal-sftp\n"
            + self.extra
        )
        return config

    def start(self) -> SSHServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.makedirs("/run/sshd", exist_ok=True)  # the privilege-separation dir sshd expects
        if not self.host_key.exists():
            keygen(self.host_key)
        config = self.write_config()
        if self.netns is not None:
            return self._start_hidden(config)
        log = open(self.dir / "sshd.log", "ab")  # noqa: SIM115 - sshd owns it from here
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd {self.name} exited: {self.log()}")
            try:
                with socket.create_connection((self.address, self.port), timeout=1) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"sshd {self.name} did not listen on {self.port}: {self.log()}")

    def _start_hidden(self, config: Path) -> SSHServer:
        """sshd inside the namespace: only what runs there (a gateway's sshd) reaches it."""
        assert self.netns is not None
        log_path = self.dir / "sshd.log"
        start = log_path.stat().st_size if log_path.exists() else 0
        log = open(log_path, "ab")  # noqa: SIM115 - sshd owns it from here
        self.process = subprocess.Popen(
            [*self.netns.enter(), SSHD, "-D", "-e", "-f", str(config)], stdout=log,
            stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd {self.name} exited: {self.log()}")
            with open(log_path, "rb") as fh:
                fh.seek(start)
                if b"Server listening on" in fh.read():
                    return self
            time.sleep(0.02)
        raise RuntimeError(f"sshd {self.name} did not listen in its namespace: {self.log()}")

    def log(self) -> str:
        try:
            return (self.dir / "sshd.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """The listener, its sessions and everything they run (the remote workers)."""
        if self.process is None or self.process.poll() is not None:
            return []
        return process_tree(self.process.pid)

    def kill(self) -> None:
        """The host vanishes: SIGKILL the whole tree, collected before the first kill."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process is not None:
            self.process.wait(timeout=10)

    def freeze(self) -> list[int]:
        """The host hangs (the kernel still acknowledges TCP): SIGSTOP the whole tree."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        return pids

    def stop(self) -> None:
        """Stop the server and whatever runs below it (frozen or not)."""
        if self.process is None:
            return
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
            pass


class Netns:
    """A network namespace of its own (only a loopback), held open by a sleeping process.

    What listens in it is unreachable from the tests' namespace: no route, no interface
    in common. Only a :class:`Gateway`'s sshd, which runs inside it, gets there.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", "ip link set lo up && echo up && exec sleep 86400"],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
        assert self.process.stdout is not None
        try:
            line = read_line(self.process.stdout, 30, "a network namespace (unshare --net)")
        except BaseException:
            self.process.kill()
            raise
        if line.strip() != b"up":
            self.process.kill()
            raise RuntimeError("could not make a network namespace (unshare --net, ip link)")
        self.path = f"/proc/{self.process.pid}/ns/net"

    def enter(self) -> list[str]:
        """The command prefix that runs a command inside the namespace."""
        return ["nsenter", f"--net={self.path}"]

    def listen(self, address: str) -> socket.socket:
        """A listening TCP socket that lives in this namespace (made from a helper thread
        that joins it: a socket keeps the namespace it was made in)."""
        made: list = []

        def make() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                        raise OSError(ctypes.get_errno(), "setns")
                finally:
                    os.close(fd)
                sock = socket.socket()
                sock.bind((address, 0))
                sock.listen(16)
                made.append(sock)
            except Exception as exc:  # pragma: no cover - reported below
                made.append(exc)

        thread = threading.Thread(target=make)  # the thread ends in the namespace: fine
        thread.start()
        thread.join(10)
        if not made or isinstance(made[0], Exception):
            raise RuntimeError(f"could not listen inside the namespace: {made}")
        return made[0]

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


class Gateway(SSHServer):
    """A jump host: it accepts connections in one namespace (the tests' own, or ``outer``)
    and serves each with ``sshd -i`` running inside ``inner``, so its direct-tcpip
    channels reach what listens there. ``accepted`` counts connections (logins)."""

    def __init__(self, directory: Path, name: str, authorized_keys: Path, inner: Netns,
                 outer: Netns | None = None, address: str = "127.0.0.1") -> None:
        super().__init__(directory, name, authorized_keys, address=address)
        self.inner = inner
        self.outer = outer
        self.accepted = 0
        self.children: list[subprocess.Popen] = []
        self._sock: socket.socket | None = None

    def start(self) -> Gateway:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.makedirs("/run/sshd", exist_ok=True)
        if not self.host_key.exists():
            keygen(self.host_key)
        if self.outer is None:
            sock = socket.socket()
            sock.bind((self.address, 0))
            sock.listen(16)
        else:
            sock = self.outer.listen(self.address)
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = self.write_config()
        threading.Thread(target=self._serve, args=(sock, config), daemon=True,
                         name=f"gateway-{self.name}").start()
        return self

    def _serve(self, sock: socket.socket, config: Path) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:  # closed by stop()
                return
            self.accepted += 1
            with open(self.dir / "sshd.log", "ab") as log:
                self.children.append(subprocess.Popen(
                    [*self.inner.enter(), SSHD, "-i", "-e", "-f", str(config)],
                    stdin=conn, stdout=conn, stderr=log, start_new_session=True))
            conn.close()

    def pids(self) -> list[int]:
        return [pid for child in self.children if child.poll() is None
                for pid in process_tree(child.pid)]

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for child in self.children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass


class SSHLab:
    """Several servers, one client key, and the files a user's ~/.ssh would hold."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.client_key = self.dir / "client_key"
        keygen(self.client_key)
        self.authorized_keys = self.dir / "authorized_keys"
        shutil.copy(self.client_key.with_suffix(".pub"), self.authorized_keys)
        self.known_hosts = self.dir / "known_hosts"
        self.known_hosts.write_text("")
        self.ssh_config = self.dir / "ssh_config"
        self.servers: list[SSHServer] = []

    def add_server(self, max_sessions: int = 10, trusted: bool = True, **more) -> SSHServer:
        """Start one more server (``host<N>`` in the ssh_config); ``trusted``: in known_hosts.
        ``more``: SSHServer's ``netns``, ``address``, ``extra``."""
        name = f"host{len(self.servers) + 1}"
        server = SSHServer(self.dir / name, name, self.authorized_keys, max_sessions,
                           **more).start()
        return self._added(server, trusted)

    def add_gateway(self, inner: Netns, outer: Netns | None = None,
                    address: str = "127.0.0.1", trusted: bool = True) -> Gateway:
        """Start a jump host into ``inner`` (``host<N>`` in the ssh_config)."""
        name = f"host{len(self.servers) + 1}"
        gateway = Gateway(self.dir / name, name, self.authorized_keys, inner, outer,
                          address).start()
        return self._added(gateway, trusted)

    def _added(self, server, trusted: bool):
        self.servers.append(server)
        if trusted:
            with open(self.known_hosts, "a") as fh:
                fh.write(server.known_hosts_line)
        self.write_config()
        return server

    def write_config(self, extra: str = "") -> None:
        """One ``Host`` block per server, then ``extra`` (more blocks)."""
        blocks = [
            f"Host {s.name}\n"
            f"    HostName {s.address}\n"
            f"    Port {s.port}\n"
            "    User root\n"
            f"    IdentityFile {self.client_key}\n"
            "    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {self.known_hosts}\n"
            for s in self.servers
        ]
        self.ssh_config.write_text("\n".join(blocks) + extra)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


if __name__ == "__main__":  # pragma: no cover - a manual aid
    import tempfile

    lab = SSHLab(Path(tempfile.mkdtemp(prefix="pymw-sshd-")))
    try:
        for _ in range(2):
            lab.add_server()
        print(lab.ssh_config.read_text())
        print(f"ssh -F {lab.ssh_config} host1")
        signal.pause()
    finally:
        lab.stop()
