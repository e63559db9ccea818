"""The HTML report in a real browser: it loads offline, throws nothing, and draws every plot.

Headless Chromium (Debian package ``chromium``) is driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: JSON messages, NUL-terminated, commands on fd 3, replies on fd 4),
so no browser download and no Python browser package is needed. Collected while the page loads:

- page errors (``Runtime.exceptionThrown``: an uncaught script exception);
- console errors (``Runtime.consoleAPICalled`` of type error/assert, and ``Log.entryAdded`` of
  level error: this is where Chromium reports an SVG attribute it cannot parse, such as a NaN
  width, and a resource it could not load);
- every request that is not the page itself (the report must need no network).

Then a script measures each plot in the laid-out page: its SVGs' rendered size, the marks
(bars) with a non-empty bounding box inside the SVG's viewBox, the texts (labels, ticks) that
reach past it, and the rows of a bar chart with no bar. A test on a deliberately broken
page checks that the checker itself catches each kind of failure.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hopscope.analysis.render import PLOTS, write_html
from hopscope.analysis.report import Report
from tests.unit.test_analysis_html import report_from_simulation

pytestmark = pytest.mark.integration

TIMEOUT_S = 60.0

# Runs in the page after load: what each plot looks like once laid out.
MEASURE_PLOTS = """
(() => Array.from(document.querySelectorAll("figure.plot")).map((figure) => ({
  name: figure.dataset.plot,
  empty: figure.hasAttribute("data-empty"),
  svgs: Array.from(figure.querySelectorAll("svg")).map((svg) => {
    const box = svg.getBoundingClientRect();
    const view = svg.viewBox.baseVal;
    const marks = Array.from(svg.querySelectorAll(".mark"));
    const inside = marks.filter((mark) => {
      const b = mark.getBBox();
      return b.width > 0 && b.height > 0 && b.x >= view.x - 0.5 && b.y >= view.y - 0.5 &&
        b.x + b.width <= view.x + view.width + 0.5 && b.y + b.height <= view.y + view.height + 0.5;
    });
    const within = (b) => b.x >= view.x - 0.5 && b.y >= view.y - 0.5 &&
      b.x + b.width <= view.x + view.width + 0.5 && b.y + b.height <= view.y + view.height + 0.5;
    const texts = Array.from(svg.querySelectorAll("text"));
    const cut = texts.filter((text) => !within(text.getBBox())).map((text) => text.textContent);
    // A bar chart's row whose band (the label's line) holds no drawn bar.
    const bare = Array.from(svg.querySelectorAll(".row-label")).filter((label) => {
      const l = label.getBBox();
      return !inside.some((mark) => {
        const b = mark.getBBox();
        return b.y < l.y + l.height && b.y + b.height > l.y;
      });
    }).map((label) => label.textContent);
    return {width: box.width, height: box.height, marks: marks.length, drawn: inside.length,
            texts: texts.length, cut: cut, bare: bare};
  }),
})))()
"""


@dataclass
class PageCheck:
    """What the browser saw while loading one page."""

    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    plots: list[dict[str, Any]] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Every reason the page is not a good report (empty when it is)."""
        found = [f"page error: {e}" for e in self.page_errors]
        found += [f"console error: {e}" for e in self.console_errors]
        found += [f"network request: {url}" for url in self.requests]
        for plot in self.plots:
            if plot["empty"]:
                continue
            if not plot["svgs"]:
                found.append(f"plot {plot['name']}: no svg")
            for index, svg in enumerate(plot["svgs"]):
                where = f"plot {plot['name']} svg {index}"
                if svg["width"] < 100 or svg["height"] < 50:
                    found.append(f"{where}: rendered {svg['width']}x{svg['height']} px")
                if svg["drawn"] == 0:
                    found.append(f"{where}: no mark drawn ({svg['marks']} marks)")
                elif svg["drawn"] < svg["marks"]:
                    found.append(f"{where}: {svg['marks'] - svg['drawn']} marks empty or outside")
                if svg["texts"] == 0:
                    found.append(f"{where}: no axis or label text")
                found += [f"{where}: text cut by the edge: {text!r}" for text in svg["cut"]]
                found += [f"{where}: row without a bar: {label!r}" for label in svg["bare"]]
        return found


def chromium() -> str:
    """The system Chromium, or a failure that says how to install it."""
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            "headless Chromium is needed for the report browser tests and was not found on "
            "PATH: install the Debian package `chromium` (apt-get install -y chromium)",
            pytrace=False,
        )
    return found


class DevTools:
    """A DevTools-protocol session with one headless Chromium over a pipe.

    One page target, attached in flat mode, so that commands for the page carry its session
    id. Events arrive interleaved with replies and are kept in order in ``events``.
    """

    def __init__(self, executable: str, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Above 4, so that moving one end to fd 3 cannot overwrite the other end.
        to_browser_r, from_browser_w = (_above_4(to_browser_r), _above_4(from_browser_w))
        args = [
            "--headless",
            "--remote-debugging-pipe",
            "--no-sandbox",  # CI containers run as root, where the sandbox refuses to start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            "about:blank",
        ]
        # The protocol pipe must be fds 3 and 4 in the browser: bash moves them there (dash
        # takes single-digit fds only; preexec_fn is unsafe in a process with threads, and
        # polars' pool makes this one threaded).
        script = f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}'
        self._process = subprocess.Popen(
            ["bash", "-c", script, executable, *args],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def send(
        self, method: str, params: dict[str, Any] | None = None, *, page: bool = True
    ) -> dict[str, Any]:
        """Send a command (to the page session unless ``page=False``) and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if page and self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        """Read until the event ``method`` arrives (earlier events are kept)."""
        for event in self.events:
            if event["method"] == method:
                return event
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            message = self._read(deadline)
            if "method" in message:
                self.events.append(message)
                if message["method"] == method:
                    return message

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no DevTools message within {TIMEOUT_S} s")
            ready, _, _ = select.select([self._from_browser], [], [], remaining)
            if ready:
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"Chromium exited: {self.stderr()}")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def stderr(self) -> str:
        if self._process.poll() is None or self._process.stderr is None:
            return "(still running)"
        return self._process.stderr.read().decode(errors="replace")[-2000:]

    def close(self) -> None:
        try:
            if self._process.poll() is None:
                self.send("Browser.close", page=False)
            self._process.wait(timeout=15)
        except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait(timeout=15)
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)
            if self._process.stderr is not None:
                self._process.stderr.close()


def _above_4(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


@pytest.fixture(scope="module")
def browser() -> Iterator[DevTools]:
    executable = chromium()
    with tempfile.TemporaryDirectory(prefix="hopscope-chromium-") as profile:
        devtools = DevTools(executable, Path(profile))
        try:
            yield devtools
        finally:
            devtools.close()


def load(browser: DevTools, page: Path) -> PageCheck:
    """Open ``page`` in a fresh tab, wait for load and one frame, and report what happened."""
    target = browser.send("Target.createTarget", {"url": "about:blank"}, page=False)["targetId"]
    browser.session = browser.send(
        "Target.attachToTarget", {"targetId": target, "flatten": True}, page=False
    )["sessionId"]
    browser.events.clear()
    try:
        for domain in ("Runtime", "Log", "Page", "Network"):
            browser.send(f"{domain}.enable")
        browser.send("Page.navigate", {"url": page.as_uri()})
        browser.wait_for("Page.loadEventFired")
        # One animation frame: layout and SVG geometry are final before measuring.
        browser.send(
            "Runtime.evaluate",
            {
                "expression": "new Promise(r => requestAnimationFrame(() => r(1)))",
                "awaitPromise": True,
            },
        )
        measured = browser.send(
            "Runtime.evaluate", {"expression": MEASURE_PLOTS, "returnByValue": True}
        )
        check = PageCheck(plots=measured["result"]["value"])
        for event in browser.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text")
                check.page_errors.append(str(text))
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                check.console_errors.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                )
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                check.console_errors.append(params["entry"]["text"])
            elif method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if url != page.as_uri() and not url.startswith("data:"):
                    check.requests.append(url)
        return check
    finally:
        browser.send("Target.closeTarget", {"targetId": target}, page=False)
        browser.session = None


@pytest.fixture(scope="module")
def report() -> Report:
    return report_from_simulation()


def test_report_renders_every_plot_without_errors(
    browser: DevTools, report: Report, tmp_path: Path
) -> None:
    page = write_html(report, tmp_path / "report.html")
    check = load(browser, page)
    assert check.problems() == []
    assert [plot["name"] for plot in check.plots] == list(PLOTS)
    for plot in check.plots:
        assert not plot["empty"], plot["name"]
        assert all(svg["drawn"] >= 2 for svg in plot["svgs"]), plot
    by_name = {plot["name"]: plot for plot in check.plots}
    assert len(by_name["coordination"]["svgs"]) == 2


def test_a_partial_report_renders_without_errors(
    browser: DevTools, report: Report, tmp_path: Path
) -> None:
    partial = Report(
        source=report.source,
        window=report.window,
        counts=report.counts,
        latency=report.latency,
        results={"hops": report.results["hops"]},
    )
    check = load(browser, write_html(partial, tmp_path / "partial.html"))
    assert check.problems() == []
    drawn = [plot["name"] for plot in check.plots if not plot["empty"]]
    assert drawn == ["latency", "hops"]


def test_the_checker_catches_a_broken_page(
    browser: DevTools, report: Report, tmp_path: Path
) -> None:
    """A throwing script, an unparsable SVG length, an empty plot, a cut label, a remote
    request: all seen."""
    page = write_html(report, tmp_path / "report.html").read_text(encoding="utf-8")
    # An empty hop plot: its svg keeps its frame but loses every bar.
    hops = page.index('data-plot="hops"')
    end = page.index("</figure>", hops)
    figure = re.sub(r'<rect class="mark"[^>]*>.*?</rect>', "", page[hops:end])
    # A NaN width on a latency bar (an HTML parser keeps the first of duplicate attributes).
    broken = page[:hops].replace('class="mark" x=', 'class="mark" width="NaN" x=', 1)
    broken += figure + page[end:]
    broken = broken.replace(
        "</body>",
        '<script>throw new Error("report script broke")</script>'
        '<img src="http://127.0.0.1:9/pixel.png" alt=""></body>',
    )
    # A label pushed past the left edge (x="-4…", far outside the viewBox).
    broken = broken.replace('class="row-label" x="', 'class="row-label" x="-4', 1)
    path = tmp_path / "broken.html"
    path.write_text(broken, encoding="utf-8")
    problems = load(browser, path).problems()
    text = "\n".join(problems)
    assert "page error: Error: report script broke" in text
    assert re.search(r"console error: .*<rect> attribute width.*NaN", text), text
    assert "plot hops svg 0: no mark drawn (0 marks)" in text
    assert "plot hops svg 0: row without a bar: " in text
    assert re.search(r"plot critical_path svg 0: text cut by the edge: '\w", text), text
    assert "network request: http://127.0.0.1:9/pixel.png" in text
