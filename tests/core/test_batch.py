"""pymw_core.batch: the resources normaliser and the run directory batch interfaces share."""

from __future__ import annotations

import os

import pytest

from pymw_core import InterfaceError, TaskError
from pymw_core.batch import RunDir, read_reply
from pymw_core.resources import key as resources_key
from pymw_core.resources import normalize as normalise_resources


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, {}),
        ({}, {}),
        ({"cpus": 4}, {"cpus": 4}),
        ({"memory": 512}, {"memory": 512}),
        ({"memory": "2GB"}, {"memory": 2048}),
        ({"memory": "1.5GiB"}, {"memory": 1536}),
        ({"memory": "100m"}, {"memory": 100}),
        ({"memory": "1500K"}, {"memory": 2}),  # rounded up to whole MiB
        ({"gpus": 0, "cpus": 1}, {"cpus": 1}),  # no GPU asks for what no gpus asks for
        ({"gpus": 2, "cpus": None}, {"gpus": 2}),
    ],
)
def test_resources_are_normalised(given, expected):
    assert normalise_resources(given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"cpu": 2}, "unknown key.*'cpu'.*known: cpus, memory, gpus"),
        ({"cpus": 0}, "at least 1"),
        ({"cpus": 1.5}, "whole number"),
        ({"cpus": True}, "whole number"),
        ({"gpus": -1}, "must not be negative"),
        ({"memory": "lots"}, "such as '512M'"),
        ([("cpus", 2)], "must be a dict"),
    ],
)
def test_bad_resources_are_refused_in_words(given, message):
    with pytest.raises(TaskError, match=message):
        normalise_resources(given, "resources")


def test_equal_resources_share_a_key_and_different_ones_do_not():
    assert resources_key({"memory": 2048, "cpus": 2}) == resources_key(
        normalise_resources({"cpus": 2, "memory": "2G"}))
    assert resources_key({"cpus": 2}) != resources_key({"cpus": 2, "gpus": 1})
    assert resources_key({}) == ()


def test_a_run_directory_lives_inside_work_dir_and_goes_at_the_end(tmp_path):
    run = RunDir(str(tmp_path), "pymw-test", absolute=True)
    assert os.path.dirname(run.path) == str(tmp_path)
    name = run.install_runtime()
    assert name.startswith("pymw-runtime-") and os.path.isfile(run.join(name))
    run.write("x", b"data", atomic=True)
    assert sorted(os.listdir(run.path)) == sorted([name, "x"])
    assert read_reply(run.join("x")) is None  # not a reply frame
    run.remove()
    assert not os.path.exists(run.path)
    assert os.path.isdir(tmp_path)


def test_a_relative_work_dir_is_refused_where_nodes_read_it():
    with pytest.raises(InterfaceError, match="must be an absolute path"):
        RunDir("relative/dir", "pymw-test", absolute=True)
