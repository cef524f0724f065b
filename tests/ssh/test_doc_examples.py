"""The docs' examples marked ``interface=ssh`` run against the lab's sshd (doc_examples.py).

The pages name hosts ``node1`` and ``node2``, as a user's ``~/.ssh/config`` would: the
test writes those aliases for the lab's servers and points pymw.toml's ``[ssh]`` table at
them, so the blocks run exactly as the page shows them.
"""

from __future__ import annotations

import json
import sys

import pytest
from doc_examples import all_blocks, run

BLOCKS = [b for b in all_blocks() if b.runs and b.interface == "ssh"]


def ssh_config_with_node_aliases(lab, path):
    """The lab's ssh_config with ``node1``, ``node2`` as further names of host1, host2."""
    text = lab.ssh_config.read_text()
    for n in (1, 2):
        text = text.replace(f"Host host{n}\n", f"Host host{n} node{n}\n")
    path.write_text(text)
    return path


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_the_ssh_example_runs_and_prints_what_the_page_shows(block, lab, remote_python,
                                                             remote_dir, tmp_path):
    config = ssh_config_with_node_aliases(lab, tmp_path / "ssh_config")
    # remote=venv: the page says the remote python needs packages (joblib, scikit-learn)
    python = [sys.executable] if block.marker.get("remote") == "venv" else remote_python
    # stderr_apart: each worker's login shell on the lab's hosts runs the machine's
    # ~/.bashrc, whose `pyenv init` rehashes pyenv's shims; two logins at once race there
    # and pyenv complains on stderr, which PyMW passes on as the worker's ("[node2/w1]
    # pyenv: cannot rehash ..."): the machine's noise, not the page's output.
    run(block, tmp_path, stderr_apart=True, config=(
        'interface = "ssh"\n\n[ssh]\nhosts = ["node1", "node2"]\n'
        f"ssh_config = {json.dumps(str(config))}\n"
        f"python = {json.dumps(python)}\n"
        f"remote_dir = {json.dumps(str(remote_dir))}\n"
        "connect_timeout = 5.0\n"))
