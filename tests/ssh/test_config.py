"""ssh as people configure it: jump hosts, Include, Match, HostKeyAlias, accept-new, certificates.

Real sshd servers on 127.0.0.1. "Reachable from the jump host alone" is a network
namespace: the cluster's nodes (``node1``, ``node2``) run their sshd inside namespace B,
which has nothing but its own loopback. No address of B is routable from the tests'
namespace, so a direct connection is refused whatever the ports. A jump host is a
listening socket in the tests' namespace whose connections are served by ``sshd -i``
started *inside* B (:class:`ssh.sshd.Gateway`): its direct-tcpip channels open from B, so
it reaches the nodes and nothing else does. For two hops, ``hop1`` leads into namespace
A, where ``hop2`` listens and leads into B: the nodes are two hops away and hop2 is not
reachable directly either. Every config is written to a temporary directory and passed
as ``ssh_config=``; nothing reads the user's ~/.ssh.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from pymw_testing import require, wait_until

from pymw_core import Master
from pymw_core.errors import InterfaceError
from ssh.conftest import base_python
from ssh.sshd import Netns, SSHLab, SSHServer, keygen, sshd_available

pytestmark = pytest.mark.timeout(120)
PYTHON = [base_python(), "-I"]


def netns_of_this_process(_: object = None) -> str:
    """What a task returns to say which network namespace it ran in."""
    return os.readlink("/proc/self/ns/net")


def slow_netns(_: object = None) -> str:
    """netns_of_this_process, after a nap: each of two workers gets some of a few."""
    import time

    time.sleep(0.3)
    return os.readlink("/proc/self/ns/net")


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """Namespaces A and B, two nodes in B, jump hosts into them, and a client key."""
    if not sshd_available() or os.geteuid() != 0:
        require(False, "the jump host tests need sshd and root (network namespaces)")
    if not (shutil.which("unshare") and shutil.which("nsenter") and shutil.which("ip")):
        require(False, "the jump host tests need unshare, nsenter (util-linux) and ip (iproute2)")
    lab = SSHLab(tmp_path_factory.mktemp("sshcfg"))
    spaces: list[Netns] = []
    try:
        a, b = Netns(), Netns()
        spaces += [a, b]
        lab.nsa, lab.nsb = a, b
        lab.node1 = lab.add_server(netns=b, address="127.0.0.2")
        lab.node2 = lab.add_server(netns=b, address="127.0.0.2")
        lab.jump = lab.add_gateway(inner=b)
        lab.hop1 = lab.add_gateway(inner=a)
        lab.hop2 = lab.add_gateway(inner=b, outer=a, address="127.0.0.3")
        lab.stranger = lab.add_gateway(inner=b, trusted=False)
        lab.direct = lab.add_server()
        yield lab
    finally:
        lab.stop()
        for space in spaces:
            space.stop()


def defaults(lab: SSHLab, known_hosts: Path | None = None) -> str:
    """The ``Host *`` block every test config ends with (first value wins in ssh_config)."""
    return ("Host *\n"
            "    User root\n"
            f"    IdentityFile {lab.client_key}\n"
            "    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {known_hosts or lab.known_hosts}\n")


def block(name: str, server: SSHServer, *lines: str) -> str:
    return (f"Host {name}\n    HostName {server.address}\n    Port {server.port}\n"
            + "".join(f"    {line}\n" for line in lines))


def network(lab) -> str:
    """Blocks for the jump hosts and the nodes behind ``jump``."""
    return (block("jump", lab.jump) + block("hop1", lab.hop1)
            + block("hop2", lab.hop2, "ProxyJump hop1") + block("stranger", lab.stranger)
            + block("node1", lab.node1, "ProxyJump jump")
            + block("node2", lab.node2, "ProxyJump jump"))


def write(tmp_path: Path, text: str, name: str = "ssh_config") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def master(tmp_path: Path, config: Path, hosts: list[str], **options) -> Master:
    settings = {"hosts": hosts, "ssh_config": str(config), "python": PYTHON,
                "remote_dir": str(tmp_path / "remote"), "workers_per_host": 1,
                "connect_timeout": 5.0, "reconnect_attempts": 0}
    settings.update(options)
    return Master("ssh", **settings)


def test_nodes_behind_a_jump_host_share_its_one_connection(net, tmp_path):
    config = write(tmp_path, network(net) + defaults(net))
    before = net.jump.accepted
    with master(tmp_path, config, ["node1", "node2"]) as m:
        spaces = set(m.map(netns_of_this_process, range(8)))
        hosts = m.get_status()["hosts"]
    assert spaces == {os.readlink(net.nsb.path)}, "tasks did not run in the nodes' namespace"
    assert hosts["node1"]["state"] == "up" and hosts["node2"]["state"] == "up"
    assert net.jump.accepted - before == 1, "each node opened its own jump connection"


def test_the_nodes_are_not_reachable_without_the_jump_host(net, tmp_path):
    config = write(tmp_path, block("node1", net.node1) + defaults(net))
    with pytest.raises(InterfaceError, match="nothing accepts connections at 127.0.0.2"):
        master(tmp_path, config, ["node1"])


def test_proxyjump_none_and_explicit_user_and_port(net, tmp_path):
    config = write(tmp_path, block("direct", net.direct, "ProxyJump none")
                   + block("jump", net.jump, "ProxyJump none")
                   + "Host *\n    ProxyJump jump\n" + block("node1", net.node1)
                   + defaults(net))
    before = net.jump.accepted
    with master(tmp_path, config, ["direct", f"root@node1:{net.node1.port}"]) as m:
        # Both hosts' workers up first, and tasks that last: on a loaded machine one
        # host used to run all six quick tasks before the other's worker said hello.
        wait_until(lambda: [h["workers"] for h in m.get_status()["hosts"].values()]
                   == [1, 1], 60, "a worker up on each of the two hosts")
        assert len(set(m.map(slow_netns, range(6)))) == 2
    assert net.jump.accepted - before == 1  # node1 only; "direct" dialled directly


def test_two_hops(net, tmp_path):
    config = write(tmp_path, network(net).replace("ProxyJump jump", "ProxyJump hop1,hop2")
                   + defaults(net))
    before1, before2 = net.hop1.accepted, net.hop2.accepted
    with master(tmp_path, config, ["node1", "node2"]) as m:
        spaces = set(m.map(netns_of_this_process, range(4)))
    assert spaces == {os.readlink(net.nsb.path)}
    assert (net.hop1.accepted - before1, net.hop2.accepted - before2) == (1, 1)


def test_a_jump_host_with_its_own_proxyjump(net, tmp_path):
    # node1 -> hop2, and hop2's own config says ProxyJump hop1 (resolved recursively)
    config = write(tmp_path, network(net).replace("ProxyJump jump", "ProxyJump hop2")
                   + defaults(net))
    with master(tmp_path, config, ["node1"]) as m:
        assert list(m.map(netns_of_this_process, [0])) == [os.readlink(net.nsb.path)]


def test_proxycommand_still_works(net, tmp_path):
    if shutil.which("ssh") is None:
        require(False, "the ProxyCommand test needs the OpenSSH client (apt-get install openssh-client)")
    config = tmp_path / "ssh_config"
    config.write_text(block("jump", net.jump)
                      + block("node1", net.node1, f"ProxyCommand ssh -F {config} -W %h:%p jump")
                      + defaults(net))
    with master(tmp_path, config, ["node1"]) as m:
        assert list(m.map(netns_of_this_process, [0])) == [os.readlink(net.nsb.path)]


def test_a_jump_host_with_an_unknown_key_is_refused_naming_it(net, tmp_path):
    config = write(tmp_path, network(net).replace("ProxyJump jump", "ProxyJump stranger")
                   + defaults(net))
    with pytest.raises(InterfaceError) as info:
        master(tmp_path, config, ["node1"])
    message = str(info.value)
    assert "through jump host stranger" in message
    assert f"is not in known_hosts as [127.0.0.1]:{net.stranger.port}" in message


def test_an_included_file_and_a_match_block_define_aliases(net, tmp_path):
    (tmp_path / "conf.d").mkdir()
    write(tmp_path / "conf.d", block("included-alias", net.direct), "cluster.conf")
    config = write(tmp_path, f"Include {tmp_path}/conf.d/*.conf\n"
                   "Match originalhost matched-*\n"
                   f"    HostName 127.0.0.1\n    Port {net.direct.port}\n"
                   + defaults(net))
    with master(tmp_path, config, ["included-alias", "matched-alias"]) as m:
        assert sorted(m.get_status()["hosts"]) == ["included-alias", "matched-alias"]
        assert list(m.map(abs, [-1, -2])) == [1, 2]


def test_hostkeyalias_names_the_key_in_known_hosts(net, tmp_path):
    known = write(tmp_path, f"cluster-front {net.direct.key}\n", "known_hosts")
    config = write(tmp_path, block("aliased", net.direct, "HostKeyAlias cluster-front")
                   + block("misnamed", net.direct, "HostKeyAlias someone-else")
                   + defaults(net, known))
    with master(tmp_path, config, ["aliased"]) as m:
        assert list(m.map(abs, [-3])) == [3]
    with pytest.raises(InterfaceError, match="is not in known_hosts as someone-else"):
        master(tmp_path, config, ["misnamed"])


def test_accept_new_appends_the_key_and_says_so(net, tmp_path, caplog):
    server = net.add_server(trusted=False)
    known = write(tmp_path, net.known_hosts.read_text(), "known_hosts")
    config = write(tmp_path, block("fresh", server, "StrictHostKeyChecking accept-new")
                   + block("careless", server, "StrictHostKeyChecking no")
                   + defaults(net, known))
    with pytest.raises(InterfaceError, match="StrictHostKeyChecking no is not honoured"):
        master(tmp_path, config, ["careless"])
    with caplog.at_level(logging.WARNING, logger="pymw.ssh"), \
            master(tmp_path, config, ["fresh"]) as m:
        assert list(m.map(abs, [-4])) == [4]
    assert f"[127.0.0.1]:{server.port} {server.key}" in known.read_text().splitlines()
    added = [r for r in caplog.records if "Permanently added" in r.getMessage()]
    assert len(added) == 1 and str(known) in added[0].getMessage()
    with master(tmp_path, config, ["careless"]) as m:  # now known: strictness is moot
        assert list(m.map(abs, [-5])) == [5]


@pytest.fixture(scope="module")
def ca_server(net):
    """A server that trusts certificates of a throwaway CA and no key of its own."""
    directory = net.dir / "ca"
    directory.mkdir()
    keygen(directory / "ca")
    empty = directory / "authorized_keys"
    empty.write_text("")
    server = SSHServer(directory / "sshd", "certhost", empty,
                       extra=f"TrustedUserCAKeys {directory / 'ca.pub'}\n").start()
    with open(net.known_hosts, "a") as fh:
        fh.write(server.known_hosts_line)
    keygen(directory / "user")
    subprocess.run(["ssh-keygen", "-q", "-s", str(directory / "ca"), "-I", "pymw-test",
                    "-n", "root", "-V", "-5m:+1h", str(directory / "user.pub")], check=True)
    try:
        yield server, directory
    finally:
        server.stop()


def test_login_by_certificate_beside_the_key_or_named_by_certificatefile(
        net, ca_server, tmp_path):
    server, ca = ca_server
    elsewhere = tmp_path / "my-cert.pub"
    shutil.copy(ca / "user-cert.pub", elsewhere)
    key_only = tmp_path / "user"
    shutil.copy(ca / "user", key_only)  # the same key without its -cert.pub
    config = write(tmp_path, block("beside", server, f"IdentityFile {ca / 'user'}")
                   + block("named", server, f"IdentityFile {key_only}",
                           f"CertificateFile {elsewhere}")
                   + block("bare", server, f"IdentityFile {key_only}")
                   + defaults(net))
    with master(tmp_path, config, ["beside", "named"]) as m:
        assert list(m.map(abs, [-1, -2])) == [1, 2]
    with pytest.raises(InterfaceError, match="refused to log in root"):
        master(tmp_path, config, ["bare"])


def test_options_not_honoured_are_named_once_per_host(net, tmp_path, caplog):
    config = write(tmp_path, block("direct", net.direct, "ForwardAgent yes", "Compression yes")
                   + block("node1", net.node1, "ProxyJump jump")
                   + block("jump", net.jump, "ServerAliveInterval 7")
                   + defaults(net))
    with caplog.at_level(logging.WARNING, logger="pymw.ssh"), \
            master(tmp_path, config, ["direct", "node1"]):
        pass
    lines = [r.getMessage() for r in caplog.records if "does not honour" in r.getMessage()]
    assert len(lines) == 2, lines
    assert any("host direct" in x and "compression" in x and "forwardagent" in x
               for x in lines)
    assert any("jump host jump" in x and "serveraliveinterval" in x for x in lines)


def test_openssh_and_the_fallback_parser_agree(net, tmp_path):
    """Without the ssh client, paramiko (plus Include) reads what the tests use alike."""
    from pymw_ssh.sshconfig import Resolver

    if shutil.which("ssh") is None:
        require(False, "the reference is the OpenSSH client (apt-get install openssh-client)")
    (tmp_path / "conf.d").mkdir()
    write(tmp_path / "conf.d", block("included-alias", net.direct, "HostKeyAlias front"),
          "a.conf")
    config = write(tmp_path, f"Include {tmp_path}/conf.d/*.conf\n"
                   "Match originalhost matched-*\n    HostName 127.0.0.1\n    Port 2022\n"
                   + network(net).replace("ProxyJump jump", "ProxyJump hop1,hop2")
                   + "Host *.example\n    User carol\n    CheckHostIP yes\n"
                   + defaults(net, tmp_path / "kh-%h-%p"))
    fields = ("hostname", "port", "user", "identity_files", "identities_only",
              "known_hosts", "host_key_alias", "check_host_ip", "proxy_command")

    def view(target):
        return None if target is None else (
            tuple(getattr(target, f) for f in fields), view(target.via))

    specs = ["included-alias", "matched-x", "node1", "bob@n.example:2200", "hop2"]
    reference = Resolver(config, openssh=True)
    fallback = Resolver(config, openssh=False)
    for spec in specs:
        assert view(fallback.resolve(spec)) == view(reference.resolve(spec)), spec
