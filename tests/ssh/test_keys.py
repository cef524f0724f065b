"""Keys as docs/interfaces/ssh.md promises them: login through ssh-agent, a key that
needs a passphrase refused by name, hashed known_hosts files read like plain ones.

Each test has an sshd of its own on 127.0.0.1 (its own authorized_keys, nobody else's
key in it) and its own ssh_config, so only the key the test means can log in and only
the known_hosts file it wrote can vouch for the host. A real ``ssh-agent`` holds the
agent's keys; no test reads the user's ~/.ssh or agent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from pymw_testing import wait_until

from pymw_core import InterfaceError
from ssh.sshd import SSHServer, keygen

pytestmark = pytest.mark.ssh

HOST = "keyhost"  # the server's alias in each test's ssh_config


def square(x):
    return x * x


def within(seconds: float, what: str, call: Callable[[], Any]) -> Any:
    """``call()``'s value or exception, or fail after ``seconds`` naming ``what``
    (``Master(...)`` connects in its constructor: no result wait bounds it)."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the test's thread below
            outcome.append((False, exc))

    thread = threading.Thread(target=run, daemon=True, name="pymw-test-within")
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"timed out after {seconds} s waiting for {what}")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def public(key: Path) -> str:
    """``type base64`` of a key pair's public half."""
    return " ".join(key.with_suffix(".pub").read_text().split()[:2])


def fingerprint(key: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(key.with_suffix(".pub"))],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return out.split()[1]  # SHA256:...


@pytest.fixture
def server(lab, tmp_path) -> Iterator[SSHServer]:
    """An sshd of this test's own; its authorized_keys starts empty (``lab``: the
    requirements, sshd installed and root)."""
    authorized = tmp_path / "authorized_keys"
    authorized.write_text("")
    own = SSHServer(tmp_path / "sshd", HOST, authorized)
    try:
        yield own.start()
    finally:
        own.stop()


def config(server: SSHServer, tmp_path: Path, identity: Path, known_hosts: Path) -> str:
    """An ssh_config naming ``server`` as ``keyhost``, logging in with ``identity`` (or
    only the agent, when that file does not exist) and trusting ``known_hosts`` only."""
    path = tmp_path / "ssh_config"
    path.write_text(
        f"Host {HOST}\n"
        f"    HostName {server.address}\n"
        f"    Port {server.port}\n"
        "    User root\n"
        f"    IdentityFile \"{identity}\"\n"
        f"    UserKnownHostsFile {known_hosts}\n"
        "    GlobalKnownHostsFile /dev/null\n"
    )
    return str(path)


def trusted(server: SSHServer, tmp_path: Path) -> Path:
    known = tmp_path / "known_hosts"
    known.write_text(server.known_hosts_line)
    return known


def hashed(known: Path) -> Path:
    """``known`` rewritten by ``ssh-keygen -H``, as ``HashKnownHosts yes`` leaves it."""
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], check=True, capture_output=True,
                   stdin=subprocess.DEVNULL, timeout=30)
    text = known.read_text()
    assert text.startswith("|1|") and "127.0.0.1" not in text, text  # really hashed
    return known


@pytest.fixture
def agent(monkeypatch) -> Iterator[Callable[[Path], None]]:
    """A real ssh-agent of this test's own, as ``SSH_AUTH_SOCK``; ``add(key)`` runs
    ``ssh-add key`` against it."""
    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        pytest.fail("ssh-agent and ssh-add come with openssh-client, which sshd needs too")
    home = tempfile.mkdtemp(prefix="agent-")  # short: a socket path has at most 107 bytes
    sock = os.path.join(home, "sock")
    process = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: os.path.exists(sock) or process.poll() is not None, 10,
                   "ssh-agent to listen on its socket")
        assert process.poll() is None, "ssh-agent exited at start"
        monkeypatch.setenv("SSH_AUTH_SOCK", sock)

        def add(key: Path) -> None:
            subprocess.run(["ssh-add", str(key)], check=True, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=30,
                           env={**os.environ, "SSH_AUTH_SOCK": sock})
        yield add
    finally:
        process.kill()
        process.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


# -- logging in ---------------------------------------------------------------------------


def test_login_through_the_agent_alone(server, agent, make_master, tmp_path):
    # Seen failing with the agent's keys left out of connect.authenticate (agent_keys = ()).
    key = tmp_path / "agent_key"
    keygen(key)
    server.authorized_keys.write_text(public(key) + "\n")
    agent(key)
    key.unlink()  # only the agent has it now; the config names a file that does not exist
    master = within(60, "Master() to log in through the agent", lambda: make_master(
        hosts=[HOST], workers_per_host=1,
        ssh_config=config(server, tmp_path, key, trusted(server, tmp_path))))
    assert list(master.map(square, range(5))) == [0, 1, 4, 9, 16]
    assert master.get_status()["hosts"][HOST]["state"] == "up"
    # sshd says which key logged in: the agent's
    assert "Accepted publickey for root from 127.0.0.1" in server.log()
    assert fingerprint(key) in server.log()


def test_a_locked_identity_file_logs_in_through_the_agent_that_holds_it(
        server, agent, make_master, tmp_path):
    # The remedy the refusal below gives: ssh-add the key, the config still names the file.
    # Seen failing with the agent's keys left out of connect.authenticate (agent_keys = ()).
    plain = tmp_path / "plain"
    keygen(plain)
    locked = tmp_path / "locked"
    shutil.copy(plain, locked)
    shutil.copy(plain.with_suffix(".pub"), locked.with_suffix(".pub"))
    subprocess.run(["ssh-keygen", "-q", "-p", "-N", "a passphrase", "-f", str(locked)],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
    server.authorized_keys.write_text(public(locked) + "\n")
    agent(plain)  # the same key, added without typing the passphrase
    master = within(60, "Master() to log in with the agent's copy of the locked key",
                    lambda: make_master(hosts=[HOST], workers_per_host=1, ssh_config=config(
                        server, tmp_path, locked, trusted(server, tmp_path))))
    assert list(master.map(square, [3])) == [9]


@pytest.mark.parametrize("kind", [
    ["-t", "ed25519"],  # OpenSSH's own format
    ["-t", "rsa", "-b", "2048", "-m", "PEM"],  # the older PEM form (Proc-Type: ENCRYPTED)
], ids=["openssh-ed25519", "pem-rsa"])
def test_a_key_that_needs_a_passphrase_is_refused_by_name_without_an_agent(
        server, make_master, tmp_path, monkeypatch, kind):
    # Seen failing before the fix in connect.authenticate: paramiko 5 raises TypeError
    # (not PasswordRequiredException) for a locked key, which was skipped in silence;
    # the refusal said "none of the identity files exists" and never named the key.
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    key = tmp_path / "locked key"  # a space: the ssh-add command must quote it
    subprocess.run(["ssh-keygen", "-q", *kind, "-N", "a passphrase", "-C", "", "-f", str(key)],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
    server.authorized_keys.write_text(public(key) + "\n")  # sshd would take it
    with pytest.raises(InterfaceError) as caught:
        within(60, "Master() to refuse the locked key", lambda: make_master(
            hosts=[HOST], ssh_config=config(server, tmp_path, key, trusted(server, tmp_path))))
    message = str(caught.value)
    assert f"host {HOST}:" in message
    assert "passphrase" in message
    assert f"ssh-add '{key}'" in message
    assert "none of the identity files exists" not in message
    assert "Traceback" not in message and "TypeError" not in message
    assert "Accepted publickey" not in server.log()


# -- hashed known_hosts --------------------------------------------------------------------


def test_a_hashed_known_hosts_entry_vouches_for_the_host(server, make_master, tmp_path):
    # Seen failing with hostkeys.load dropping hashed (|1|) entries: "not in known_hosts".
    key = tmp_path / "client"
    keygen(key)
    server.authorized_keys.write_text(public(key) + "\n")
    known = hashed(trusted(server, tmp_path))
    master = within(60, "Master() to connect with a hashed known_hosts", lambda: make_master(
        hosts=[HOST], workers_per_host=1, ssh_config=config(server, tmp_path, key, known)))
    assert list(master.map(square, [4])) == [16]


def test_a_different_key_in_a_hashed_known_hosts_is_refused_as_changed(
        server, make_master, tmp_path):
    # Seen failing with hostkeys.verify accepting a "changed" status (no refusal at all).
    key = tmp_path / "client"
    keygen(key)
    server.authorized_keys.write_text(public(key) + "\n")
    impostor = tmp_path / "impostor"
    keygen(impostor)
    name = f"[127.0.0.1]:{server.port}"
    known = tmp_path / "known_hosts"
    known.write_text(f"{name} {public(impostor)}\n")
    hashed(known)
    with pytest.raises(InterfaceError) as caught:
        within(60, "Master() to refuse the changed key", lambda: make_master(
            hosts=[HOST], ssh_config=config(server, tmp_path, key, known)))
    message = str(caught.value)
    assert f"host {HOST}: its key CHANGED" in message
    assert fingerprint(server.host_key) in message and fingerprint(impostor) in message
    assert "Accepted publickey" not in server.log()  # refused before logging in
    # The way out it gives works on the hashed file: the old entry goes.
    command = f"ssh-keygen -R '{name}' -f {known}"
    assert command in message
    subprocess.run(command, shell=True, check=True, capture_output=True,
                   stdin=subprocess.DEVNULL, timeout=30)
    keys = paramiko.HostKeys(str(known))
    assert keys.lookup(name) is None
