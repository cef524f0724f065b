"""scikit-learn's GridSearchCV on the "pymw" backend, on ``local`` and on ``ssh`` (real sshd).

The search must give exactly what the serial run gives: the same best parameters, the
same best score and the same score for every candidate. The data set is one that
scikit-learn ships (iris), so nothing is downloaded.
"""

from __future__ import annotations

import pytest
from pymw_testing import require_module

# CI installs them (noxfile TEST_DEPS): there their absence fails; elsewhere it skips.
joblib = require_module("joblib", "the joblib backend's tests need joblib")
load_iris = require_module("sklearn.datasets", "the grid search needs scikit-learn").load_iris
GridSearchCV = require_module("sklearn.model_selection", "scikit-learn").GridSearchCV
SVC = require_module("sklearn.svm", "scikit-learn").SVC

GRID = {"C": [0.1, 1.0, 10.0], "gamma": [0.01, 0.1, 1.0]}
FOLDS = 3
FITS = FOLDS * len(GRID["C"]) * len(GRID["gamma"])


def search(n_jobs):
    X, y = load_iris(return_X_y=True)
    found = GridSearchCV(SVC(), GRID, cv=FOLDS, n_jobs=n_jobs).fit(X, y)
    return found.best_params_, found.best_score_, list(found.cv_results_["mean_test_score"])


@pytest.fixture(scope="module")
def serial():
    return search(None)  # outside any parallel_config: joblib runs it in this process


def check_same(found, serial):
    params, score, scores = found
    assert params == serial[0]
    assert score == serial[1]
    assert scores == serial[2]


def test_grid_search_on_local_matches_the_serial_run(serial):
    with joblib.parallel_config(backend="pymw", interface="local", num_workers=2) as config:
        found = search(-1)
        status = config["backend"].master.get_status()
    config["backend"].close()
    check_same(found, serial)
    assert status["interface"] == "local" and status["failed"] == 0
    assert status["finished"] >= 1, "no fit ran as a PyMW task"


@pytest.mark.ssh
def test_grid_search_on_ssh_matches_the_serial_run(serial, lab, remote_python, remote_dir):
    with joblib.parallel_config(
        backend="pymw", interface="ssh", hosts=["host1", "host2"],
        ssh_config=str(lab.ssh_config), python=remote_python, remote_dir=str(remote_dir),
        workers_per_host=1, connect_timeout=10.0,
    ) as config:
        assert joblib.effective_n_jobs(-1) == 2  # one worker on each of the two hosts
        found = search(-1)
        status = config["backend"].master.get_status()
    config["backend"].close()
    check_same(found, serial)
    assert status["interface"] == "ssh" and status["hosts_up"] == 2
    assert status["failed"] == 0 and status["finished"] >= 1, status
    done = {name: row.get("tasks_done") for name, row in status["hosts"].items()}
    assert all(count >= 1 for count in done.values()), f"a host ran no fit: {done}"


@pytest.mark.ssh
def test_grid_search_on_an_existing_ssh_master(serial, make_master):
    master = make_master()
    with joblib.parallel_config(backend="pymw", master=master):
        found = search(-1)
    check_same(found, serial)
    assert not master.closed and master.get_status()["finished"] >= 1
