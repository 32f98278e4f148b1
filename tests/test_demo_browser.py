"""`addp demo` in a real browser (slow): the command serves the page (bundled model, generated examples) and
headless Chromium, driven by Playwright through the system browser's path (Debian's ``chromium`` package;
Playwright's own browser download is not used), picks an example, types an expression, clicks Segment, and checks
that the overlay appears, that the result panel shows the mask's area, and that the page asked no other host for
anything.

``ADDP_CHROMIUM`` names the browser when it is not on PATH; ``ADDP_DEMO_SCREENSHOT=docs/img/demo.png`` also keeps
the screenshot there (docs/demo.md shows it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
from test_demo_support import free_port

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ROOT = Path(__file__).resolve().parents[1]


def browser_path() -> str | None:
    """The Chromium to drive: $ADDP_CHROMIUM, else the first of :data:`BROWSERS` on PATH."""
    if os.environ.get("ADDP_CHROMIUM"):
        return os.environ["ADDP_CHROMIUM"]
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def wait_for_page(url: str, server: subprocess.Popen, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"addp demo exited with {server.returncode}: {server.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1.0)
    raise AssertionError(f"addp demo did not answer on {url} within {timeout_s:.0f} s")


@pytest.mark.slow
def test_a_browser_segments_an_example(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install "
                                                                 "'addp-agent[dev]')")
    executable = browser_path()
    if executable is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set ADDP_CHROMIUM=/path/to/chrome); Playwright's "
                    "own browser download is not used")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    server = subprocess.Popen([sys.executable, "-m", "addp_agent", "demo", "--port", str(port)], cwd=tmp_path,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elsewhere: list[str] = []
    try:
        wait_for_page(url, server)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                                 args=["--no-sandbox", "--disable-dev-shm-usage"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1100})
                page.set_default_timeout(60_000)  # a busy 2-core machine
                page.on("request", lambda request: elsewhere.append(request.url)
                        if urlparse(request.url).hostname not in ("127.0.0.1", None) else None)
                page.goto(url, wait_until="load")
                page.get_by_text("shapes-val-0.png").first.click()  # the example: its image and expression
                page.locator("#image-preview img").wait_for()
                expression = page.locator("#expression textarea")
                assert expression.input_value() == "the second shape from the top"
                expression.fill("the cyan diamond")
                page.locator("#segment-button").click()
                page.locator("#overlay img").wait_for()
                summary = page.locator("#result-summary")
                summary.get_by_text(re.compile(r"mask area: \d+ px")).wait_for()
                text = summary.inner_text()
                page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    area = int(re.search(r"mask area: (\d+) px", text).group(1))
    assert 0 < area < 256 * 256 and "the cyan diamond" in text
    assert elsewhere == [], f"the page requested other hosts: {elsewhere[:5]}"
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    if os.environ.get("ADDP_DEMO_SCREENSHOT"):
        Path(os.environ["ADDP_DEMO_SCREENSHOT"]).write_bytes((tmp_path / "demo.png").read_bytes())
