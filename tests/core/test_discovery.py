"""Choosing an interface by name: argument, environment, config files; clear refusals."""

from __future__ import annotations

import pytest

from pymw_core import InterfaceError, Master
from pymw_core import config as pymw_config
from pymw_core.plugins import installed_interfaces


@pytest.fixture(autouse=True)
def in_an_empty_directory(monkeypatch, tmp_path):
    """No pymw.toml around (conftest.py removed the PYMW_* settings)."""
    monkeypatch.chdir(tmp_path)


def test_local_is_installed_through_its_entry_point():
    assert "local" in installed_interfaces()
    assert installed_interfaces()["local"].value == "pymw_local:LocalInterface"


def test_unknown_name_lists_installed_and_suggests():
    with pytest.raises(InterfaceError) as info:
        Master("locl")
    text = str(info.value)
    assert "no PyMW interface named 'locl'" in text
    assert "local" in text.split("installed:")[1]
    assert "Did you mean 'local'?" in text


def test_one_of_our_interfaces_missing_says_which_distribution_to_install(monkeypatch):
    """Seen failing before: the message listed the installed names and stopped there."""
    from pymw_core import plugins

    without_ssh = {k: v for k, v in installed_interfaces().items() if k != "ssh"}
    monkeypatch.setattr(plugins, "installed_interfaces", lambda: without_ssh)
    with pytest.raises(InterfaceError, match=r"named 'ssh' is installed .*pip install pymw-ssh"):
        Master("ssh", hosts=["node1"])


def test_environment_variable_chooses(monkeypatch):
    monkeypatch.setenv("PYMW_INTERFACE", "nosuch")
    with pytest.raises(InterfaceError, match="'nosuch'"):
        Master()


def test_argument_beats_environment(monkeypatch):
    monkeypatch.setenv("PYMW_INTERFACE", "nosuch")
    with Master("local", num_workers=1) as m:
        assert m.interface_name == "local"


def test_pymw_toml_in_the_working_directory(tmp_path):
    (tmp_path / "pymw.toml").write_text('interface = "local"\n[local]\nnum_workers = 1\n')
    with Master() as m:
        assert m.interface_name == "local"
        assert m.interface.num_workers == 1


def test_arguments_win_over_the_file(tmp_path):
    (tmp_path / "pymw.toml").write_text("[local]\nnum_workers = 1\nprefetch = 0\n")
    with Master(num_workers=2) as m:
        assert m.interface.num_workers == 2
        assert m.interface.prefetch == 0  # still came from the file


def test_pymw_config_names_the_file(tmp_path, monkeypatch):
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text('interface = "nosuch2"\n')
    monkeypatch.setenv("PYMW_CONFIG", str(cfg))
    with pytest.raises(InterfaceError, match="'nosuch2'"):
        Master()


def test_pymw_config_that_does_not_exist(monkeypatch, tmp_path):
    monkeypatch.setenv("PYMW_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(InterfaceError, match="PYMW_CONFIG names .* not a file"):
        Master()


def test_tool_pymw_in_pyproject(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.pymw]\ninterface = "local"\n[tool.pymw.local]\nnum_workers = 1\n'
    )
    cfg = pymw_config.load_config()
    assert cfg.interface_name() == "local" and cfg.options_for("local") == {"num_workers": 1}
    with Master() as m:
        assert m.interface.num_workers == 1


def test_invalid_toml_is_reported(tmp_path):
    (tmp_path / "pymw.toml").write_text("interface = \n")
    with pytest.raises(InterfaceError, match="not valid TOML"):
        Master()


def test_unknown_option_from_the_file_is_reported(tmp_path):
    (tmp_path / "pymw.toml").write_text("[local]\nworkers = 2\n")
    with pytest.raises(InterfaceError, match="no option 'workers'.*num_workers"):
        Master()


def test_an_interface_class_is_built_with_the_options():
    class Echo:
        def __init__(self, greeting="hi"):
            self.greeting = greeting

        def execute_task(self, task, worker):
            task.task_finished(None, self.greeting)

    with Master(Echo, greeting="hello") as m:
        assert m.get_result(m.submit_task(len, ("x",)))[1] == "hello"
