"""The contract kit itself: installed with the core, loaded as a pytest plugin, and able
to fail. Each broken interface below breaks one rule; the kit must say which.

The kit runs in a child pytest (as an interface author runs it), on a test file
written here; its JUnit report says what passed and failed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest
from pymw_testing import clean_env

from pymw_core.testing import CHECKS, Target

BROKEN = '''
import os
import tempfile

import pytest

from pymw_core.testing import InterfaceContract, Target
from pymw_core.unpack import deliver
from pymw_core.worker import Runtime
from pymw_local import LocalInterface


class Inline:
    """A correct in-process interface: the real runtime, on the dispatch thread."""

    def __init__(self):
        self.runtime = Runtime(chdir=False)

    def execute_task(self, task, worker):
        deliver(task, self.runtime.run(task.payload.message(task.id)))

    def cleanup(self):
        self.runtime.close()


class Twice(Inline):
    def execute_task(self, task, worker):
        reply = self.runtime.run(task.payload.message(task.id))
        deliver(task, reply)
        deliver(task, reply)  # a second report of the same attempt


class Clash(Inline):
    def get_status(self):
        return {"running": "mine"}


class Leaky(LocalInterface):
    def cleanup(self):
        super().cleanup()
        tempfile.mkstemp(prefix="leaked-")


class TestInline(InterfaceContract):
    target = Target(Inline)


class TestTwice(InterfaceContract):
    target = Target(Twice)


class TestClash(InterfaceContract):
    target = Target(Clash)


class TestLeaky(InterfaceContract):
    target = Target(Leaky, {"num_workers": 1}, deadline=5)


class TestTooMany(InterfaceContract):
    target = Target("local", {"num_workers": 2}, concurrency=1)


class TestFixture(InterfaceContract):
    @pytest.fixture
    def pymw_target(self, tmp_path):
        return Target("local", {"num_workers": 1}, skip={"results": "declared here"})
'''


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """{test id: (outcome, message)} of the kit run on the broken interfaces above."""
    folder = tmp_path_factory.mktemp("kit")
    (folder / "test_broken.py").write_text(BROKEN)
    report = folder / "report.xml"
    selected = ("(TestInline and (results or exceptions or status or cancel))"
                " or (TestTwice and results)"
                " or (TestClash and status) or (TestLeaky and cleanup)"
                " or (TestTooMany and concurrency) or TestFixture and results")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--strict-markers",
         "-k", selected, f"--junitxml={report}", "test_broken.py"],
        cwd=folder, capture_output=True, text=True, timeout=240, env=clean_env(),
    )
    assert report.exists(), done.stdout + done.stderr
    found = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname').rsplit('.', 1)[-1]}.{case.get('name')}"
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            element = case.find(kind)
            if element is not None:
                outcome, message = kind, (element.get("message") or "") + (element.text or "")
        found[name] = (outcome, message)
    return found


def test_a_correct_interface_passes(outcomes):
    for check in ("results", "exceptions", "status"):
        assert outcomes[f"TestInline.test_{check}"][0] == "passed", outcomes[f"TestInline.test_{check}"]


def test_a_second_report_of_one_attempt_fails_the_kit(outcomes):
    outcome, message = outcomes["TestTwice.test_results"]
    assert outcome == "failure" and "reported attempt" in message and "2 times" in message


def test_an_interface_status_key_the_master_owns_fails_the_kit(outcomes):
    outcome, message = outcomes["TestClash.test_status"]
    assert outcome == "failure" and "interface.running" in message


def test_a_file_left_after_cleanup_fails_the_kit(outcomes):
    outcome, message = outcomes["TestLeaky.test_cleanup"]
    assert outcome == "failure" and "leaked-" in message


def test_more_tasks_at_once_than_declared_fails_the_kit(outcomes):
    outcome, message = outcomes["TestTooMany.test_concurrency"]
    assert outcome == "failure" and "more than the 1 declared" in message


def test_a_declared_skip_says_its_reason(outcomes):
    outcome, message = outcomes["TestFixture.test_results"]
    assert outcome == "skipped" and "declared here" in message


def test_a_missing_hook_skips_saying_which(outcomes):
    # Inline has no stop_task(): cancelling a running task cannot be checked, and the
    # skip names the hook. (Seen failing with stop_task added to Inline: the check ran.)
    outcome, message = outcomes["TestInline.test_cancel"]
    assert outcome == "skipped" and "has no stop_task() hook" in message, (outcome, message)
    skips = {n: m for n, (o, m) in outcomes.items() if o == "skipped"}
    assert {"TestInline.test_cancel", "TestFixture.test_results"} <= set(skips), skips
    assert all("declared here" in m or "has no" in m for m in skips.values()), skips


def test_a_skip_naming_no_check_is_refused():
    with pytest.raises(ValueError, match="names no check"):
        Target("local", skip={"lost_workers": "typo"})
    assert "lost_worker" in CHECKS


def test_the_plugin_is_installed_with_the_core():
    done = subprocess.run([sys.executable, "-m", "pytest", "--markers"], capture_output=True,
                          text=True, timeout=120, env=clean_env(), cwd="/")
    assert "pymw_contract_slow" in done.stdout, done.stdout[-2000:] + done.stderr
    from importlib.metadata import entry_points

    assert [ep.value for ep in entry_points(group="pytest11") if ep.name == "pymw_core.testing"] \
        == ["pymw_core.testing"]


def test_the_kit_runs_with_minus_p_when_autoload_is_off(tmp_path):
    (tmp_path / "test_one.py").write_text(textwrap.dedent('''
        from pymw_core.testing import InterfaceContract, Target

        class TestLocal(InterfaceContract):
            target = Target("local", {"num_workers": 1})
        '''))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "pymw_core.testing",
         "--strict-markers", "-q", "-k", "test_results or test_lost_worker", "test_one.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env=clean_env(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout
