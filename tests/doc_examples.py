"""The examples of the READMEs and docs/ as test cases: found in the Markdown, run, compared.

Nothing here copies an example: each fenced block is read from its page when the test
runs, so a changed page is what gets tested. An HTML comment right before a block
(invisible on the rendered page) tells the runner what the block needs::

    <!-- pymw-doc: interface=ssh -->                 run against the suite's sshd
    <!-- pymw-doc: interface=ssh remote=venv -->     ... whose remote python has our packages
    <!-- pymw-doc: save-as=prog.py -->               also a file the page's commands use
    <!-- pymw-doc: compile-only because REASON -->   cannot run here: only compiled
    <!-- pymw-doc: signature -->                     a call signature: compiled as a def

Output: a ``text`` block right after a ``python`` block is what the program prints;
in a ``console`` block, the lines after a ``$ command`` are what it prints. In both, a
line ``...`` stands for any number of lines and ``...`` inside a line for any text.
The tests that run the blocks live beside each service's fixtures (tests/ssh,
tests/condor, tests/slurm, tests/mpi); the rest run in tests/docs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pymw_testing import clean_env, run_child

ROOT = Path(__file__).resolve().parent.parent
RUNNABLE = ("python", "console", "sh")
SERVICES = ("ssh", "condor", "slurm", "mpi")  # each has a test module running its blocks
FLAGS = ("compile-only", "signature")
KEYS = ("interface", "remote", "save-as")
_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*pymw-doc:(.*?)-->\s*$")
_SEPARATOR = "--8<-- pymw-doc command {} --8<--"
_INSTALLS = re.compile(r"(^|[;&|]\s*)(sudo\s+)?(pip3?|python3?\s+-m\s+pip|apt-get|apt)\s+install\b")


@dataclass
class Block:
    """One fenced block of a page, with its marker and the output the page shows for it."""

    page: str  # relative to the repository
    line: int  # of the opening fence
    lang: str
    text: str
    marker: dict[str, str] = field(default_factory=dict)
    output: str | None = None  # python: the ``text`` block that follows

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def interface(self) -> str:
        return self.marker.get("interface", "local")

    @property
    def runs(self) -> bool:
        return self.lang in RUNNABLE and not ({"compile-only", "signature"} & set(self.marker))


def pages() -> list[str]:
    """README.md, each plugin's README and every page under docs/, relative to the repository."""
    plugins = sorted(os.path.relpath(p, ROOT) for p in ROOT.glob("plugins/*/README.md"))
    found = ["README.md", *plugins]
    for folder, _, names in os.walk(ROOT / "docs"):
        found += [os.path.relpath(os.path.join(folder, n), ROOT) for n in names
                  if n.endswith(".md")]
    return sorted(found)


def parse_marker(text: str) -> dict[str, str]:
    """``interface=ssh compile-only because ...`` -> {"interface": "ssh", "compile-only": ...}."""
    words, _, reason = text.strip().partition(" because ")
    marker: dict[str, str] = {}
    for word in words.split():
        key, sep, value = word.partition("=")
        if sep and key in KEYS:
            marker[key] = value
        elif not sep and key in FLAGS:
            marker[key] = reason.strip()
        else:
            raise ValueError(f"unknown pymw-doc marker word {word!r} (keys: {KEYS}, flags: {FLAGS})")
    return marker


def blocks(page: str) -> list[Block]:
    """The fenced blocks of ``page``, each with the marker just before it."""
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    marker: dict[str, str] = {}
    previous_end = -1
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        comment = _MARKER.match(lines[i])
        if comment:
            marker = parse_marker(comment[1])
        elif fence:
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
            if end is None:
                raise ValueError(f"{page}:{i + 1}: a fence that never closes")
            block = Block(page, i + 1, fence[1], "\n".join(lines[i + 1:end]) + "\n", marker)
            previous = found[-1] if found else None
            between = lines[previous_end + 1:i]
            if (block.lang == "text" and previous is not None and previous.lang == "python"
                    and not any(s.strip() for s in between)):
                previous.output = block.text
            else:
                found.append(block)
            previous_end = end
            marker = {}
            i = end
        elif lines[i].strip():
            marker = {}  # a marker belongs to the block right after it
        i += 1
    return found


def all_blocks() -> list[Block]:
    return [b for page in pages() for b in blocks(page)]


def matches(expected: str, actual: str) -> bool:
    """``actual`` is ``expected``, where ``...`` stands for any lines or any text in a line."""
    parts = []
    for line in expected.rstrip("\n").splitlines():
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*".join(re.escape(p) for p in line.rstrip().split("...")) + r"[ \t]*\n")
    text = "\n".join(line.rstrip() for line in actual.rstrip("\n").splitlines()) + "\n"
    return re.fullmatch("".join(parts), text if actual.strip() else "", re.DOTALL) is not None


def commands(block: Block) -> list[tuple[str, str]]:
    """The ``$ command`` lines of a console block, each with the output shown after it."""
    found: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            found.append((line[2:], []))
        elif block.lang == "sh" and line.strip():
            found.append((line, []))
        elif found:
            found[-1][1].append(line)
    return [(cmd, "\n".join(out).strip("\n")) for cmd, out in found]


def signature_stub(block: Block) -> tuple[str, str]:
    """``x = master.f(a, *, b=1)`` -> ("f", "def f(a, *, b=1):\n    pass\n")."""
    call = re.sub(r"^[\w, ]+=\s*", "", block.text.strip()).split("->")[0].strip()
    name, _, args = call.partition("(")
    name = name.split(".")[-1]
    return name, f"def {name}({args}:\n    pass\n"


def check_compiles(block: Block) -> None:
    """What a block that does not run must at least be: valid Python, or valid shell."""
    if block.lang == "python":
        text = signature_stub(block)[1] if "signature" in block.marker else block.text
        compile(text, block.id, "exec")
    elif block.lang in ("console", "sh"):
        script = "\n".join(cmd for cmd, _ in commands(block))
        proc = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
        assert proc.returncode == 0, f"{block.id}: not valid shell: {proc.stderr}"


def prepare(block: Block, directory: Path, config: str = "") -> None:
    """The directory a user would run the block in: the page's saved files, pymw.toml."""
    for other in blocks(block.page):
        if "save-as" in other.marker:
            (directory / other.marker["save-as"]).write_text(other.text)
    if config:
        (directory / "pymw.toml").write_text(config)
    examples = directory / "examples"
    if not examples.exists():
        examples.symlink_to(ROOT / "examples")


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A user's shell: this venv's commands first on PATH, no PyMW setting of the suite's."""
    env = clean_env(**(extra or {}))
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def run(block: Block, directory: Path, config: str = "", env: dict[str, str] | None = None,
        timeout: float | None = None, stderr_apart: bool = False) -> None:
    """Run ``block`` as a user would copy it into ``directory``; fail on an error or on
    output other than the page shows, or if it runs past ``timeout`` (at most what
    pytest-timeout leaves the test: run_child kills it first and quotes its output).

    A console block's stderr is compared with its stdout, as a terminal shows both;
    ``stderr_apart``: only stdout is compared, stderr is quoted when a command fails."""
    for cmd, _ in commands(block) if block.lang != "python" else []:
        assert not _INSTALLS.search(cmd), (  # never into the suite's environment or system
            f"{block.id}: `{cmd}` installs something; mark the block "
            "`<!-- pymw-doc: compile-only because ... -->` (the suite installs from wheels)")
    prepare(block, directory, config)
    if block.lang == "python":
        script = directory / (block.marker.get("save-as") or "example.py")
        script.write_text(block.text)
        proc = run_child([sys.executable, script.name], f"{block.id}'s program", timeout,
                         cwd=directory, env=environment(env))
        assert proc.returncode == 0, (f"{block.id} failed (exit {proc.returncode}):\n"
                                      f"{proc.stdout}\n{proc.stderr}")
        if block.output is not None:
            assert matches(block.output, proc.stdout), (
                f"{block.id} printed\n{proc.stdout}\nbut the page shows\n{block.output}")
        return
    steps = commands(block)
    for cmd, _ in steps:  # never into the suite's own environment or system
        assert not _INSTALLS.search(cmd), (
            f"{block.id}: `{cmd}` installs something; mark the block "
            "`<!-- pymw-doc: compile-only because ... -->` (the suite installs from wheels)")
    script = ("" if stderr_apart else "exec 2>&1\n") + "set -e\n" + "".join(
        f"echo {shlex.quote(_SEPARATOR.format(n))}\n{cmd}\n" for n, (cmd, _) in enumerate(steps))
    proc = run_child(["bash", "-c", script], f"{block.id}'s commands", timeout,
                     cwd=directory, env=environment(env))
    pieces = re.split(r"^--8<-- pymw-doc command \d+ --8<--\n", proc.stdout, flags=re.MULTILINE)
    for n, (cmd, shown) in enumerate(steps):
        got = pieces[n + 1] if n + 1 < len(pieces) else "(did not run)"
        if n + 2 == len(pieces):
            assert proc.returncode == 0, (f"{block.id}: `{cmd}` failed "
                                          f"(exit {proc.returncode}):\n{got}\n{proc.stderr}")
        if shown:
            assert matches(shown, got), f"{block.id}: `{cmd}` printed\n{got}\nbut the page shows\n{shown}"
