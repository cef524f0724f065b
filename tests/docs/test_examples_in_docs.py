"""Every example of the READMEs and docs/ runs as written (tests/doc_examples.py: how).

The blocks on the default interface run here; tests/{ssh,condor,slurm,mpi}/
test_doc_examples.py run the blocks that name their interface, with that folder's
service fixtures. Seen failing: `matches` was tried against the quickstart's output
changed to "most steps below 1001: 179" (and a page's block changed to raise).
"""

from __future__ import annotations

import inspect

import doc_examples
import pytest
import tomllib
from doc_examples import SERVICES, all_blocks, check_compiles, matches, run

BLOCKS = all_blocks()
LOCAL = [b for b in BLOCKS if b.runs and b.interface == "local"]


@pytest.mark.parametrize("block", LOCAL, ids=lambda b: b.id)
def test_the_example_runs_and_prints_what_the_page_shows(block, tmp_path):
    run(block, tmp_path)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang in ("python", "console", "sh")],
                         ids=lambda b: b.id)
def test_the_example_is_valid_code(block):
    check_compiles(block)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang in ("python", "console", "sh")
                                   and not b.runs and "signature" not in b.marker],
                         ids=lambda b: b.id)
def test_an_example_that_does_not_run_says_why(block):
    assert len(block.marker["compile-only"].split()) >= 3, (
        f"{block.id}: `compile-only because <reason>` must give the reason on the page")


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.runs], ids=lambda b: b.id)
def test_the_example_names_an_interface_the_suite_has_a_service_for(block):
    assert block.interface in ("local", *SERVICES), block.id


@pytest.mark.parametrize("block", [b for b in BLOCKS if "signature" in b.marker],
                         ids=lambda b: b.id)
def test_a_signature_shown_is_the_codes(block):
    """Each parameter a page shows exists, of the same kind, with the same default."""
    from pymw_core import Master

    name, stub = doc_examples.signature_stub(block)
    namespace: dict = {}
    exec(stub, namespace)
    real = inspect.signature({"Master": Master}.get(name) or getattr(Master, name))
    for param in inspect.signature(namespace[name]).parameters.values():
        assert param.name in real.parameters, f"{block.id}: {name} has no {param.name}"
        actual = real.parameters[param.name]
        assert param.kind == actual.kind, f"{block.id}: {name}'s {param.name} is {actual.kind}"
        if param.default is not param.empty:
            assert param.default == actual.default, f"{block.id}: {name}'s {param.name}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "toml"], ids=lambda b: b.id)
def test_the_toml_parses(block):
    tomllib.loads(block.text)


def is_pymw_config(block) -> bool:
    return block.text.startswith("# pymw.toml") or "interface" in tomllib.loads(block.text)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "toml" and is_pymw_config(b)],
                         ids=lambda b: b.id)
def test_a_pymw_toml_names_real_interfaces_and_options(block, tmp_path, monkeypatch):
    """What `pymw config` would say of it: every interface table's options are known."""
    from pymw_core.cli import effective
    from pymw_core.plugins import installed_interfaces

    path = tmp_path / "pymw.toml"
    path.write_text(block.text)
    monkeypatch.setenv("PYMW_CONFIG", str(path))
    data = tomllib.loads(block.text)
    names = {data.get("interface")} | (set(data) & set(installed_interfaces()))
    for name in sorted(n for n in names if n):
        assert effective(name).errors == [], f"{block.id}: [{name}]"


def test_output_matching_fails_on_changed_output():
    """The comparison the runner uses can fail (the runner's own check)."""
    assert matches("most steps below 1001: 178\n", "most steps below 1001: 178\n")
    assert not matches("most steps below 1001: 178\n", "most steps below 1001: 179\n")
    assert matches("a\n...\nz\n", "a\nb\nc\nz\n")
    assert matches("pi is about 3.14...\n", "pi is about 3.1416\n")
    assert not matches("a\n...\nz\n", "a\nb\n")
    assert not matches("x\n", "")


def test_an_install_command_is_never_run(tmp_path):
    block = doc_examples.Block("x.md", 1, "console", "$ pip install pymw-ssh\n")
    with pytest.raises(AssertionError, match="installs something"):
        run(block, tmp_path)


def test_a_marker_with_an_unknown_word_is_refused():
    with pytest.raises(ValueError, match="unknown pymw-doc marker"):
        doc_examples.parse_marker("interfce=ssh")
