"""The ssh interface over loopback, beside ``local`` in the same run.

``python benchmarks/bench_ssh.py [repeats]`` starts a private sshd on 127.0.0.1 with
tests/ssh/sshd.py (so it needs root and openssh-server, like the tests) and measures,
taking turns inside each repeat:

* **null-task throughput**: 20,000 tasks that return None, submitted at once, every
  result collected; tasks/s, on one loopback host with 2 workers and on ``local``
  with 2 workers.
* **round trip**: one task submitted, its result awaited, 1,000 times in a row;
  the median and 90th percentile in milliseconds.
* **1 MB payloads**: 50 tasks that each receive 1 MB (10**6 bytes) and return it;
  MB/s counting both directions.

The same figures through one jump host (``ProxyJump``) are the row ``ssh via jump``:
the host's sshd runs in a network namespace of its own that only the jump host's
``sshd -i`` reaches (tests/ssh/sshd.py's ``Netns`` and ``Gateway``), so every byte
goes through the jump host's connection and a direct-tcpip channel inside it. It
needs unshare/nsenter/ip; without them that row is left out and the reason printed.

Beside them, **execnet** (pytest-xdist's zero-install transport, the closest peer):
the same null items and 1 MB echoes over the same loopback server, one gateway (one
remote process) per worker, through the OpenSSH client with the same ssh_config. Each
channel has at most ``WINDOW`` (8) items in flight, a new one sent as each comes back:
a bounded queue per worker, as PyMW keeps (its prefetch), and the window issue 26 names.
Unbounded, execnet would measure how fast 20,000 items fill the pipes, not a worker
pool; ``throughput(..., window=None)`` still gives that figure by hand. Its row is
left out (with the reason) where execnet or ``ssh`` is missing.

Each figure is the best of ``repeats`` with its spread ((worst - best) / best), and
the comparison is the ratio of the two interfaces' figures from the same run. The
remote interpreter is this Python's base interpreter run with ``-I``: nothing
installed, the worker runtime comes from the uploaded zip, as on a real host.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(os.path.dirname(HERE), "tests")
WORKERS = 2
WINDOW = 8  # execnet items in flight per channel


def null():
    return None


def _throughput(master: Any, tasks: int) -> float:
    started = time.perf_counter()
    submitted = [master.submit_task(null) for _ in range(tasks)]
    for task in submitted:
        master.get_result(task)
    return tasks / (time.perf_counter() - started)


def _round_trips(master: Any, trips: int) -> list[float]:
    times = []
    for _ in range(trips):
        started = time.perf_counter()
        master.get_result(master.submit_task(null))
        times.append(time.perf_counter() - started)
    return times


PAYLOAD_BYTES = 1_000_000


def echo(data: bytes) -> bytes:
    return data


def _payload_mb_s(master: Any, tasks: int) -> float:
    blob = os.urandom(PAYLOAD_BYTES)
    started = time.perf_counter()
    submitted = [master.submit_task(echo, (blob,)) for _ in range(tasks)]
    for task in submitted:
        master.get_result(task)
    return 2 * tasks * PAYLOAD_BYTES / 1e6 / (time.perf_counter() - started)


_EXECNET_LOOP = """
for item in channel:
    channel.send(item)
"""


class _Execnet:
    """``WORKERS`` execnet gateways over ssh, each looping items back: the peer's figures."""

    def __init__(self, config: str, host: str, python: str) -> None:
        import execnet

        self.gateways = [execnet.makegateway(f"ssh=-F {config} {host}//python={python}")
                         for _ in range(WORKERS)]
        self.channels = [gw.remote_exec(_EXECNET_LOOP) for gw in self.gateways]

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        for gateway in self.gateways:
            gateway.exit()

    def throughput(self, items: int, payload: object = None,
                   window: int | None = WINDOW) -> float:
        """Items per second, each channel holding at most ``window`` (None: all at once)."""
        channels = self.channels
        started = time.perf_counter()
        sent = items if window is None else min(items, window * WORKERS)
        for index in range(sent):
            channels[index % WORKERS].send(payload)
        for index in range(items):
            channels[index % WORKERS].receive()  # item `index`: each channel answers in order
            if sent < items:
                channels[sent % WORKERS].send(payload)
                sent += 1
        return items / (time.perf_counter() - started)

    def round_trips(self, trips: int) -> list[float]:
        channel, times = self.channels[0], []
        for _ in range(trips):
            started = time.perf_counter()
            channel.send(None)
            channel.receive()
            times.append(time.perf_counter() - started)
        return times

    def payload_mb_s(self, items: int) -> float:
        rate = self.throughput(items, os.urandom(PAYLOAD_BYTES))
        return 2 * rate * PAYLOAD_BYTES / 1e6


def _best(values: list[float], higher: bool) -> dict[str, float]:
    best, worst = (max(values), min(values)) if higher else (min(values), max(values))
    return {"best": best, "spread_pct": abs(worst - best) / best * 100, "repeats": len(values)}


def _base_python() -> str:
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def run(repeats: int = 3, tasks: int = 20_000, trips: int = 1_000, payloads: int = 50) -> dict:
    """Measure both interfaces, taking turns; the best of ``repeats`` with spreads and ratios."""
    if TESTS not in sys.path:
        sys.path.insert(0, TESTS)
    from ssh.sshd import Netns, SSHLab, sshd_available

    if not sshd_available():
        return {"skipped": "OpenSSH's sshd is not installed (apt-get install openssh-server)"}
    if os.geteuid() != 0:
        return {"skipped": "the private sshd needs root"}
    from pymw_core import Master

    lab = SSHLab(Path(tempfile.mkdtemp(prefix="pymw-bench-ssh-")))
    samples: dict[str, dict[str, list]] = {
        name: {"throughput": [], "median_ms": [], "p90_ms": [], "mb_s": []}
        for name in ("ssh", "jump", "local", "execnet")
    }
    space = None
    jump_skipped = execnet_skipped = ""
    peer: _Execnet | None = None
    masters: dict[str, Any] = {}
    try:
        lab.add_server()
        config = lab.ssh_config.read_text()
        try:
            space = Netns()
            node = lab.add_server(netns=space, address="127.0.0.2")
            gateway = lab.add_gateway(inner=space)
            config = lab.ssh_config.read_text() + (
                f"Host node\n    HostName 127.0.0.2\n    Port {node.port}\n"
                f"    ProxyJump {gateway.name}\n    User root\n"
                f"    IdentityFile {lab.client_key}\n    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {lab.known_hosts}\n")
        except (OSError, RuntimeError) as exc:
            jump_skipped = f"no jump host: {exc}"
        lab.ssh_config.write_text(config)
        options = {"ssh_config": str(lab.ssh_config), "workers_per_host": WORKERS,
                   "python": [_base_python(), "-I"], "remote_dir": str(lab.dir / "remote")}
        started = time.perf_counter()
        masters["ssh"] = Master("ssh", hosts=["host1"], **options)
        ssh_start = time.perf_counter() - started
        if not jump_skipped:
            masters["jump"] = Master("ssh", hosts=["node"], **options)
        masters["local"] = Master("local", num_workers=WORKERS)
        try:
            peer = _Execnet(str(lab.ssh_config), "host1", _base_python())
            peer.throughput(min(tasks, 2_000))  # warm up
        except Exception as exc:  # not installed, no ssh client: the row says why
            execnet_skipped = f"{type(exc).__name__}: {exc}"
        turns = list(masters.items())
        for master in masters.values():  # warm up: functions cached, pipelines deep
            _throughput(master, min(tasks, 2_000))
        for _ in range(repeats):
            for name, master in turns:
                samples[name]["throughput"].append(_throughput(master, tasks))
            if peer is not None:
                samples["execnet"]["throughput"].append(peer.throughput(tasks))
            for name, master in turns:
                times = sorted(_round_trips(master, trips))
                samples[name]["median_ms"].append(statistics.median(times) * 1e3)
                samples[name]["p90_ms"].append(times[int(0.9 * (len(times) - 1))] * 1e3)
            if peer is not None:
                times = sorted(peer.round_trips(trips))
                samples["execnet"]["median_ms"].append(statistics.median(times) * 1e3)
                samples["execnet"]["p90_ms"].append(times[int(0.9 * (len(times) - 1))] * 1e3)
            for name, master in turns:
                samples[name]["mb_s"].append(_payload_mb_s(master, payloads))
            if peer is not None:
                samples["execnet"]["mb_s"].append(peer.payload_mb_s(payloads))
    finally:
        for master in masters.values():
            master.close()
        if peer is not None:
            peer.close()
        lab.stop()
        if space is not None:
            space.stop()
    rows, best = [], {}
    for name, label in (("ssh", f"ssh (1 loopback host, {WORKERS} workers)"),
                        ("jump", f"ssh via jump (1 host behind 1 jump host, {WORKERS} workers)"),
                        ("local", f"local ({WORKERS} workers)"),
                        ("execnet",
                         f"execnet over ssh ({WORKERS} gateways, {WINDOW} in flight each)")):
        if name not in masters and not (name == "execnet" and peer is not None):
            continue
        tput = _best(samples[name]["throughput"], higher=True)
        median = _best(samples[name]["median_ms"], higher=False)
        p90 = _best(samples[name]["p90_ms"], higher=False)
        mb_s = _best(samples[name]["mb_s"], higher=True)
        best[name] = (tput["best"], median["best"], mb_s["best"])
        rows.append({
            "interface": label,
            "null tasks/s (best)": round(tput["best"]),
            "spread": f"±{tput['spread_pct']:.0f}% ({tput['repeats']})",
            "round trip median ms": round(median["best"], 3),
            "round trip p90 ms": round(p90["best"], 3),
            "round trip spread": f"±{median['spread_pct']:.0f}% ({median['repeats']})",
            "1 MB payload MB/s (best)": round(mb_s["best"]),
            "payload spread": f"±{mb_s['spread_pct']:.0f}% ({mb_s['repeats']})",
        })
    jump = {}
    if "jump" in best:
        jump = {"throughput ssh via jump / ssh": best["jump"][0] / best["ssh"][0],
                "round trip ssh via jump / ssh": best["jump"][1] / best["ssh"][1],
                "payload MB/s ssh via jump / ssh": best["jump"][2] / best["ssh"][2]}
    else:
        jump = {"ssh via jump": f"not measured: {jump_skipped}"}
    if "execnet" in best:
        jump.update({"throughput ssh / execnet": best["ssh"][0] / best["execnet"][0],
                     "round trip ssh / execnet": best["ssh"][1] / best["execnet"][1],
                     "payload MB/s ssh / execnet": best["ssh"][2] / best["execnet"][2]})
    else:
        jump["execnet"] = f"not measured: {execnet_skipped}"
    return {
        "rows": rows,
        "throughput ssh / local": best["ssh"][0] / best["local"][0],
        "round trip ssh / local": best["ssh"][1] / best["local"][1],
        "payload MB/s ssh / local": best["ssh"][2] / best["local"][2],
        **jump,
        "ssh start-up s (connect, probe, upload, 2 workers)": round(ssh_start, 3),
        "tasks per throughput repeat": tasks,
        "round trips per repeat": trips,
        "samples": samples,
    }


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    result = run(repeats)
    from report import print_result

    print_result("bench_ssh", result)


if __name__ == "__main__":
    main()
