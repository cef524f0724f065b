"""Developer sessions: ``nox -s tests``, ``versions``, ``coverage``, ``lint``, ``typecheck``,
``bench``, ``demo``.

Every session that runs PyMW installs it as users do: wheels built from this tree,
installed normally (never ``-e``), so a module or data file a wheel leaves out fails
here first. Tests run from a scratch directory, where the source tree is not importable.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import tempfile

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

ROOT = os.path.dirname(os.path.abspath(__file__))
# Every distribution of this repository, the core first. Add new plugins here.
DISTRIBUTIONS = [
    ".",
    "plugins/pymw_local",
    "plugins/pymw_ssh",
    "plugins/pymw_condor",
    "plugins/pymw_mpi",
    "plugins/pymw_slurm",
]
EXAMPLE_PLUGIN = "tests/plugins/pymw_threads_example"
# joblib: the range pymw_core.joblib_backend is tested with (the pymw-core[joblib] extra).
TEST_DEPS = ["pytest>=8", "pytest-timeout>=2.3", "tqdm>=4.60", "setuptools>=77", "mpi4py>=3.1",
             "joblib>=1.3,<1.7", "scikit-learn>=1.3"]
WHEELS = os.path.join(ROOT, ".nox", "_wheels")
# Every CPython PyMW supports (requires-python >= 3.10): `nox -s versions` runs the
# interpreter-sensitive part of the suite on each (scripts/run-tests puts pyenv's on PATH).
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
# The whole suite already runs on the Python that runs nox: `versions` skips that one, which
# keeps CI (2 cores, the whole suite and the matrix) within its 30 minutes.
MATRIX = [v for v in PYTHONS if v != "{}.{}".format(*sys.version_info[:2])]
# The core, the default interface and the interface contract: what differs between
# Python versions (pickling, threads, subprocesses); the services' tests run once.
VERSION_TESTS = ["tests/core", "tests/local", "tests/testing", "tests/plugins"]
VERSION_DEPS = ["pytest>=8", "pytest-timeout>=2.3", "tqdm>=4.60"]
# `nox -s coverage` fails below this percentage of the statements of the core and every
# plugin together (README.md, "Coverage", says how it was chosen).
COVERAGE_FLOOR = 85


def _pip(session: nox.Session, *args: str) -> None:
    """pip of the session's environment (``.venv`` itself for a session without one)."""
    own = session.virtualenv.venv_backend == "none"
    python = sys.executable if own else "python"
    session.run(python, "-m", "pip", "--disable-pip-version-check", *args, external=own)


def build_wheels(session: nox.Session, distributions: list[str]) -> list[str]:
    """Build a wheel of each distribution into ``.nox/_wheels`` (emptied first)."""
    shutil.rmtree(WHEELS, ignore_errors=True)
    os.makedirs(WHEELS)
    _pip(session, "install", "-q", "setuptools>=77", "wheel")
    _pip(session, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", WHEELS,
         *(os.path.join(ROOT, d) for d in distributions))
    # setuptools leaves build/ and *.egg-info beside the sources; the wheels are the product.
    for d in distributions:
        shutil.rmtree(os.path.join(ROOT, d, "build"), ignore_errors=True)
        for info in glob.glob(os.path.join(ROOT, d, "*.egg-info")):
            shutil.rmtree(info, ignore_errors=True)
    wheels = sorted(glob.glob(os.path.join(WHEELS, "*.whl")))
    if len(wheels) != len(distributions):
        session.error(f"expected {len(distributions)} wheels, built {wheels}")
    return wheels


def install_wheels(session: nox.Session, wheels: list[str], *extra: str) -> None:
    """Install the wheels with their dependencies, replacing any earlier build of them."""
    _pip(session, "install", "-q", "--find-links", WHEELS, *wheels, *extra)
    _pip(session, "install", "-q", "--force-reinstall", "--no-deps", *wheels)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite against the installed wheels: core, every plugin with its real service
    (sshd, an HTCondor pool, a Slurm cluster, Open MPI), joblib, examples, docs."""
    wheels = build_wheels(session, [*DISTRIBUTIONS, EXAMPLE_PLUGIN])
    install_wheels(session, wheels, *TEST_DEPS)
    _run_suite(session, ["pytest"])


@nox.session(python=MATRIX)
def versions(session: nox.Session) -> None:
    """The core, local and contract tests on each supported CPython but nox's own.

    A listed Python missing here is skipped with nox's message; under CI (the ``CI``
    variable set) nox fails instead (its ``--error-on-missing-interpreters`` default).
    """
    wheels = build_wheels(session, [*DISTRIBUTIONS, EXAMPLE_PLUGIN])
    install_wheels(session, wheels, *VERSION_DEPS)
    _run_suite(session, ["pytest"], paths=VERSION_TESTS)


@nox.session
def coverage(session: nox.Session) -> None:
    """The suite under coverage (worker subprocesses included), reported per package.

    Its own environment (.nox/coverage): ``nox -s tests`` never pays for measuring.
    Fails below ``COVERAGE_FLOOR`` percent of all statements together.
    """
    wheels = build_wheels(session, [*DISTRIBUTIONS, EXAMPLE_PLUGIN])
    install_wheels(session, wheels, *TEST_DEPS, "coverage>=7.10")  # 7.10: patch = subprocess
    data = os.path.join(ROOT, ".nox", "_coverage")
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)
    rcfile = os.path.join(ROOT, ".coveragerc")
    env = {"COVERAGE_RCFILE": rcfile, "COVERAGE_FILE": os.path.join(data, ".coverage")}
    try:
        _run_suite(session, ["coverage", "run", "-m", "pytest"], env)
    finally:  # a failed run still reports what it measured
        session.chdir(ROOT)  # [paths] map the installed files back to this tree
        session.run("coverage", "combine", "-q", env=env)
        report = os.path.join(data, "coverage.json")
        session.run("coverage", "json", "-q", "-o", report, env=env)
        session.run("coverage", "report", "--skip-covered", "--sort=cover", env=env)
        total = _per_package(session, report)
    if total < COVERAGE_FLOOR:
        session.error(f"coverage {total:.1f}% is below the floor of {COVERAGE_FLOOR}%")


def _per_package(session: nox.Session, report: str) -> float:
    """Print statements and coverage per distribution; return the total percentage."""
    with open(report, encoding="utf-8") as fh:
        files = json.load(fh)["files"]
    packages: dict[str, list[int]] = {}
    for path, entry in files.items():
        name = next((p for p in path.split(os.sep) if p.startswith("pymw_")), path)
        counts = packages.setdefault(name, [0, 0])
        counts[0] += entry["summary"]["num_statements"]
        counts[1] += entry["summary"]["covered_lines"]
    lines = [f"{'package':<14}{'statements':>11}{'covered':>9}{'cover':>8}"]
    for name, (statements, covered) in sorted(packages.items()):
        lines.append(f"{name:<14}{statements:>11}{covered:>9}{100 * covered / statements:>7.1f}%")
    statements = sum(c[0] for c in packages.values())
    covered = sum(c[1] for c in packages.values())
    total = 100 * covered / statements if statements else 0.0
    lines.append(f"{'total':<14}{statements:>11}{covered:>9}{total:>7.1f}%  "
                 f"(floor {COVERAGE_FLOOR}%)")
    session.log("coverage per package:\n" + "\n".join(lines))
    return total


def _run_suite(session: nox.Session, command: list[str], env: dict | None = None,
               paths: list[str] | None = None) -> None:
    """``command`` (pytest, or pytest under coverage) from a scratch directory, on the
    session's arguments or else ``paths`` (default: the whole suite)."""
    scratch = tempfile.mkdtemp(prefix="pymw-nox-")
    session.chdir(scratch)  # the source tree is not on sys.path from here
    try:
        session.run(
            *command, "-p", "no:cacheprovider", "--rootdir", ROOT,
            "-c", os.path.join(ROOT, "pyproject.toml"),
            *(_from_root(arg) for arg in session.posargs or paths or ["tests"]),
            env={"PYMW_WHEELS": WHEELS, "PYMW_SOURCE_TREE": ROOT, **(env or {})},
        )
    finally:
        session.chdir(ROOT)
        shutil.rmtree(scratch, ignore_errors=True)


def _from_root(arg: str) -> str:
    """A test path given relative to the repository, made absolute (pytest runs elsewhere)."""
    path = os.path.join(ROOT, arg.split("::")[0])
    return os.path.join(ROOT, arg) if not arg.startswith("-") and os.path.exists(path) else arg


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: style, imports, common bugs."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy over the core and the plugins."""
    install_wheels(session, build_wheels(session, DISTRIBUTIONS), "mypy>=1.10")
    session.run("mypy", "--ignore-missing-imports", "pymw_core", "plugins")


@nox.session
def bench(session: nox.Session) -> None:
    """The performance suite: PyMW beside its peers, one run, ratios."""
    install_wheels(session, build_wheels(session, DISTRIBUTIONS), "loky", "matplotlib", "tqdm",
                   "mpi4py>=3.1", "joblib>=1.3,<1.7", "execnet>=2",
                   "submitit", "dask-jobqueue",  # bench_slurm's peers
                   "pytest>=8")  # the ssh, condor and slurm benches start their services
    # with the test suite's own helpers (tests/ssh/sshd.py and so on), which import pytest
    session.run("python", os.path.join(ROOT, "benchmarks", "run.py"), *session.posargs)


@nox.session(venv_backend="none")
def demo(session: nox.Session) -> None:
    """A real example on the default interface, in the environment that runs nox (``.venv``).

    pymw-core, pymw-local and tqdm stay installed there, so ``.venv/bin/python`` runs
    the user's own programs afterwards (the README says so).
    """
    install_wheels(session, build_wheels(session, DISTRIBUTIONS[:2]), "tqdm>=4.60")
    session.run(sys.executable, os.path.join(ROOT, "examples", "monte_pi.py"), *session.posargs,
                external=True)
