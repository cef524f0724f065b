"""Developer sessions: ``nox -s tests``, ``lint``, ``typecheck``, ``bench``, ``demo``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

PACKAGES = [
    "-e", ".",
    "-e", "plugins/pymw_local",
    "-e", "plugins/pymw_ssh",
    "-e", "plugins/pymw_condor",
    "-e", "plugins/pymw_slurm",
]
EXAMPLE_PLUGIN = ["-e", "tests/plugins/pymw_threads_example"]
TEST_DEPS = ["pytest>=8", "pytest-timeout>=2.3", "tqdm>=4.60"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite: core, local, ssh (real sshd), condor (real pool), slurm (real cluster),
    examples."""
    session.install(*PACKAGES, *EXAMPLE_PLUGIN, *TEST_DEPS)
    session.run("pytest", *(session.posargs or ["tests"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: style, imports, common bugs."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy over the core and the plugins."""
    session.install(*PACKAGES, "mypy>=1.10")
    session.run("mypy", "--ignore-missing-imports", "pymw_core", "plugins")


@nox.session
def bench(session: nox.Session) -> None:
    """The performance suite: PyMW beside its peers, one run, ratios."""
    session.install(*PACKAGES, "loky", "matplotlib", "tqdm")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """A real example on the default interface: Monte Carlo pi."""
    session.install(*PACKAGES[:4])
    session.run("python", "examples/monte_pi.py", *session.posargs)
