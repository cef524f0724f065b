"""What users install: complete wheels, and a plugin that works without the default one.

The wheels are the ones the test session built (``PYMW_WHEELS``); run alone, this file
builds its own. Every check here reads a wheel or a fresh virtual environment, never
the source tree.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from pymw_testing import clean_env, run_child

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = {
    "pymw_core": ROOT,
    "pymw_local": ROOT / "plugins" / "pymw_local",
    "pymw_ssh": ROOT / "plugins" / "pymw_ssh",
    "pymw_condor": ROOT / "plugins" / "pymw_condor",
    "pymw_mpi": ROOT / "plugins" / "pymw_mpi",
    "pymw_slurm": ROOT / "plugins" / "pymw_slurm",
}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    given = os.environ.get("PYMW_WHEELS")
    if given and glob.glob(os.path.join(given, "pymw_core-*.whl")):
        return Path(given)
    out = tmp_path_factory.mktemp("wheels")
    done = run_child(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(out), *map(str, DISTRIBUTIONS.values())],
        "pip wheel", 300)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def wheel_of(wheels: Path, package: str) -> Path:
    found = sorted(wheels.glob(f"{package}-*.whl"))
    assert found, f"no wheel for {package} in {wheels}"
    return found[-1]


@pytest.mark.parametrize("package", sorted(DISTRIBUTIONS))
def test_every_module_and_marker_of_the_package_is_in_its_wheel(wheels, package):
    names = set(zipfile.ZipFile(wheel_of(wheels, package)).namelist())
    source = DISTRIBUTIONS[package] / package
    tracked = {
        str(path.relative_to(source.parent))
        for path in source.rglob("*")
        if path.is_file() and path.suffix in (".py", ".typed") and "__pycache__" not in path.parts
    }
    assert f"{package}/py.typed" in tracked, f"{package} has no py.typed marker"
    missing = sorted(tracked - names)
    assert not missing, f"the {package} wheel lacks {missing}"


def test_every_distribution_carries_the_version_of_its_package(wheels):
    versions = {}
    for package in DISTRIBUTIONS:
        with zipfile.ZipFile(wheel_of(wheels, package)) as archive:
            meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            versions[package] = Parser().parsestr(archive.read(meta).decode())["Version"]
            init = archive.read(f"{package}/__init__.py").decode()
        assert f'__version__ = "{versions[package]}"' in init, package
    assert len(set(versions.values())) == 1, f"the distributions disagree: {versions}"


def test_every_distribution_states_its_license_as_an_spdx_expression(wheels):
    # A license table (``license = { text = ... }``) makes setuptools warn that builds stop
    # accepting it (2027-02-18); the SPDX string becomes License-Expression (PEP 639).
    for package in DISTRIBUTIONS:
        with zipfile.ZipFile(wheel_of(wheels, package)) as archive:
            meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            fields = Parser().parsestr(archive.read(meta).decode())
        assert fields["License-Expression"] == "MIT", (package, fields["License"])


@pytest.fixture(scope="module")
def ssh_only(wheels, tmp_path_factory) -> Path:
    """A fresh venv holding pymw-core and pymw-ssh from the wheels, and no pymw-local."""
    where = tmp_path_factory.mktemp("ssh-only") / "venv"
    venv.EnvBuilder(with_pip=True).create(where)
    python = where / "bin" / "python"
    done = run_child(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "--find-links", str(wheels), str(wheel_of(wheels, "pymw_core")),
         str(wheel_of(wheels, "pymw_ssh"))],
        "pip install into the ssh-only venv", 600, env=clean_env())
    assert done.returncode == 0, done.stdout + done.stderr
    return where


def run_in(where: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*argv], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=clean_env(PATH=f"{where / 'bin'}:{os.environ['PATH']}"))


def test_core_and_ssh_alone_import_every_module(ssh_only, tmp_path):
    script = (
        "import importlib, pkgutil, pymw_core, pymw_ssh\n"
        "OPTIONAL = {'pymw_core.__main__', 'pymw_core.joblib_backend', 'pymw_core.testing',\n"
        "            'pymw_core.testing.contract', 'pymw_core.testing.harness'}  # need pytest\n"
        "assert 'site-packages' in pymw_core.__file__, pymw_core.__file__\n"
        "names = []\n"
        "for pkg in (pymw_core, pymw_ssh):\n"
        "    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if info.name not in OPTIONAL:\n"
        "            importlib.import_module(info.name); names.append(info.name)\n"
        "print(len(names), ' '.join(sorted(names)))\n"
    )
    done = run_in(ssh_only, "python", "-c", script, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    count, names = done.stdout.split(" ", 1)
    assert "pymw_core.observers.progress" in names and "pymw_ssh.connect" in names
    assert int(count) >= 20


def test_an_extra_that_is_not_installed_says_which_to_install(ssh_only, tmp_path):
    done = run_in(ssh_only, "python", "-c", "import pymw_core.joblib_backend", cwd=tmp_path)
    assert done.returncode != 0
    assert "pymw-core[joblib]" in done.stderr.strip().splitlines()[-1], done.stderr


def test_pymw_interfaces_lists_ssh_and_not_local(ssh_only, tmp_path):
    done = run_in(ssh_only, "pymw", "interfaces", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    names = [line.split()[0] for line in done.stdout.splitlines()[1:]]
    assert names == ["ssh"]


def test_master_without_the_default_says_how_to_choose_in_one_line(ssh_only, tmp_path):
    done = run_in(ssh_only, "python", "-c",
                  "from pymw_core import Master\n"
                  "try:\n    Master()\n"
                  "except Exception as e:\n    print(type(e).__name__); print(e)\n",
                  cwd=tmp_path)
    kind, message = done.stdout.rstrip("\n").split("\n")
    assert kind == "ConfigurationError"
    assert "'local'" in message and "installed: ssh" in message
    assert "Master('ssh')" in message and "PYMW_INTERFACE=ssh" in message
    assert "pymw.toml" in message


@pytest.mark.parametrize("command", ["config", "check"])
def test_cli_without_the_default_exits_2_saying_how_to_choose(ssh_only, tmp_path, command):
    done = run_in(ssh_only, "pymw", command, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stdout.splitlines() if "not installed" in line
              and "choose one" in line]
    assert len(errors) == 1, done.stdout


def test_ssh_without_hosts_is_a_configuration_error_naming_the_option(ssh_only, tmp_path):
    done = run_in(ssh_only, "python", "-c",
                  "from pymw_core import Master\n"
                  "try:\n    Master('ssh')\n"
                  "except Exception as e:\n    print(type(e).__name__); print(e)\n",
                  cwd=tmp_path)
    kind, message = done.stdout.rstrip("\n").split("\n")
    assert kind == "ConfigurationError"
    assert "'hosts'" in message and "TypeError" not in message
    for command in ("config", "check"):
        done = run_in(ssh_only, "pymw", command, "--interface", "ssh", cwd=tmp_path)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        flagged = [line for line in done.stdout.splitlines() if "'hosts'" in line]
        assert len(flagged) == 1, done.stdout
        assert "could not start" not in done.stdout
