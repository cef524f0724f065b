"""The docs stay true to the code: hooks, options, exceptions, links (the examples: test_examples_in_docs.py)."""

from __future__ import annotations

import inspect
import os
import re

import pytest

import pymw_core
from pymw_core import hookspecs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(ROOT, "docs")


def read(name: str) -> str:
    with open(os.path.join(DOCS, name), encoding="utf-8") as fh:
        return fh.read()


def pages() -> list[str]:
    found = []
    for folder, _, names in os.walk(DOCS):
        found += [os.path.relpath(os.path.join(folder, n), DOCS) for n in names
                  if n.endswith(".md")]
    return sorted(found)


@pytest.mark.parametrize("hook", hookspecs.INTERFACE_HOOKS)
def test_the_interface_guide_has_a_row_for_every_interface_hook(hook):
    assert re.search(rf"^\| `{hook}\(", read("writing-an-interface.md"), re.MULTILINE)


@pytest.mark.parametrize("hook", hookspecs.OBSERVER_HOOKS)
def test_the_observer_page_has_a_row_for_every_observer_hook(hook):
    assert re.search(rf"^\| `{hook}\(", read("observers.md"), re.MULTILINE)


def test_every_local_option_is_documented():
    from pymw_local import LocalInterface

    page = read("interfaces/local.md")
    for name in inspect.signature(LocalInterface).parameters:
        assert f"| `{name}` |" in page, name


def test_every_pymw_exception_is_on_the_failures_page():
    page = read("failures.md")
    for name in pymw_core.__all__:
        value = getattr(pymw_core, name)
        if (isinstance(value, type) and issubclass(value, pymw_core.PyMWError)
                and value.__name__ == name):
            assert name in page, name


@pytest.mark.parametrize("page", pages())
def test_relative_links_resolve(page):
    text = read(page)
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        path = os.path.normpath(os.path.join(DOCS, os.path.dirname(page), target))
        assert os.path.exists(path), f"{page} links to {target}, which does not exist"


def test_the_index_links_every_page():
    index = read("index.md")
    for page in pages():
        if page != "index.md":
            assert f"({page})" in index or f"({page}#" in index, page
