"""Real tools for the view's tests: headless Chromium loads the report, tmux drives the
live view in a real terminal. Both are Debian packages (scripts/setup-env installs them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from html.parser import HTMLParser

import pytest
from pymw_testing import require


class Chromium:
    """Debian's ``chromium``, headless, with a throwaway profile."""

    def __init__(self, exe: str, profile: str) -> None:
        self.exe, self.profile = exe, profile

    def run(self, page: str, *args: str, timeout: float = 120.0) -> str:
        cmd = [self.exe, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
               f"--user-data-dir={self.profile}", "--no-first-run", *args,
               "file://" + os.path.abspath(page)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"chromium did not load {page} within {timeout} s")
        assert done.returncode == 0, f"chromium failed: {done.stderr[-2000:]}"
        return done.stdout

    def dom(self, page: str, timeout: float = 120.0) -> str:
        """The page's DOM after the browser has loaded and laid it out."""
        return self.run(page, "--dump-dom", timeout=timeout)

    def screenshot(self, page: str, png: str, width: int = 1150, height: int = 1800,
                   timeout: float = 120.0) -> str:
        self.run(page, f"--screenshot={png}", f"--window-size={width},{height}",
                 timeout=timeout)
        assert os.path.getsize(png) > 10_000, f"{png}: an empty screenshot"
        return png


@pytest.fixture(scope="session")
def artifacts(request):
    """Where screenshots are kept after the run (the suite's temporary directory is
    removed at its end): ``$PYMW_TEST_ARTIFACTS``, else ``.nox/artifacts/view`` in the
    repository."""
    where = os.environ.get("PYMW_TEST_ARTIFACTS") or os.path.join(
        str(request.config.rootpath), ".nox", "artifacts", "view")
    os.makedirs(where, exist_ok=True)
    return where


@pytest.fixture(scope="session")
def chromium(tmp_path_factory):
    exe = shutil.which("chromium")
    require(exe is not None, "Debian's chromium is not installed (apt-get install chromium)")
    return Chromium(exe, str(tmp_path_factory.mktemp("chromium-profile")))


class Element:
    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs, self.text = tag, attrs, ""

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class Elements(HTMLParser):
    """Every element of a page with its attributes and its own text (enough for checks)."""

    VOID = {"br", "meta", "img", "input", "hr", "link", "line", "rect", "polyline"}

    def __init__(self, text: str) -> None:
        super().__init__()
        self.all: list[Element] = []
        self.open: list[Element] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        el = Element(tag, {k: v or "" for k, v in attrs})
        self.all.append(el)
        if tag not in self.VOID:
            self.open.append(el)

    def handle_startendtag(self, tag, attrs):
        self.all.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        for i in range(len(self.open) - 1, -1, -1):
            if self.open[i].tag == tag:
                del self.open[i:]
                break

    def handle_data(self, data):
        for el in self.open:
            el.text += data

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Element]:
        return [e for e in self.all if (tag is None or e.tag == tag)
                and (cls is None or cls in e.classes())
                and all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def text_of_all(self) -> str:
        return " ".join(e.text for e in self.all if e.tag == "body")

    def one(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Element:
        found = self.find(tag, cls, **attrs)
        assert len(found) == 1, f"expected one <{tag} {cls or ''} {attrs}>, found {len(found)}"
        return found[0]


class Tmux:
    """A private tmux server (its own socket): a real terminal for the live view."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def __call__(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 0, f"tmux {args[0]}: {done.stderr}"
        return done.stdout

    def screen(self, escapes: bool = False) -> str:
        return self("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "view")


@pytest.fixture
def tmux(tmp_path):
    exe = shutil.which("tmux")
    require(exe is not None, "tmux is not installed (apt-get install tmux)")
    server = Tmux(str(tmp_path / f"tmux-{uuid.uuid4().hex[:8]}"))
    try:
        yield server
    finally:
        subprocess.run(["tmux", "-S", server.socket, "kill-server"], capture_output=True,
                       timeout=30)
