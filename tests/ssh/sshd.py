"""Private OpenSSH servers on 127.0.0.1 for the ssh interface's tests and benchmarks.

Each :class:`SSHServer` is one "host": its own ``sshd`` on a free port with a throwaway
host key. :class:`SSHLab` makes the shared client key, the ``known_hosts`` file that
trusts every server it started and an ``ssh_config`` file with one alias per server
(``host1``, ``host2``...), as a user's ``~/.ssh`` would have. Recipe and pitfalls:
shared/recipes/sshd-loopback.md.

CLI: ``python tests/ssh/sshd.py`` starts two servers, prints the ssh_config and waits.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

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
                 max_sessions: int = 10) -> None:
        self.dir = directory
        self.name = name
        self.port = free_port()
        self.authorized_keys = authorized_keys
        self.max_sessions = max_sessions
        self.host_key = directory / "host_key"
        self.process: subprocess.Popen | None = None

    @property
    def known_hosts_line(self) -> str:
        key = " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])
        return f"[127.0.0.1]:{self.port} {key}\n"

    def start(self) -> SSHServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.makedirs("/run/sshd", exist_ok=True)  # the privilege-separation dir sshd expects
        if not self.host_key.exists():
            keygen(self.host_key)
        config = self.dir / "sshd_config"
        config.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
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
        )
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
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"sshd {self.name} did not listen on {self.port}: {self.log()}")

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

    def add_server(self, max_sessions: int = 10, trusted: bool = True) -> SSHServer:
        """Start one more server (``host<N>`` in the ssh_config); ``trusted``: in known_hosts."""
        name = f"host{len(self.servers) + 1}"
        server = SSHServer(self.dir / name, name, self.authorized_keys, max_sessions).start()
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
            "    HostName 127.0.0.1\n"
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
