"""The web page in a real headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import os
import shutil

import pytest

from helios.media import read_video

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# `make test` installs Debian's chromium (or stops with a message); skipping is a deliberate choice.
pytestmark = pytest.mark.skipif(
    os.environ.get("HELIOS_SKIP_BROWSER") == "1", reason="HELIOS_SKIP_BROWSER=1: browser test skipped on request"
)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, (
        "chromium is not installed: `make test` installs it (apt-get install chromium), or set HELIOS_SKIP_BROWSER=1"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


def test_page_plays_changes_prompt_stops_and_downloads(serve, browser, tmp_path):
    host, _ = serve()
    page = browser.new_page(accept_downloads=True, viewport={"width": 1000, "height": 760})
    page.goto(f"http://{host}/")
    page.fill("#prompt", "a large red circle moves right slowly on a black background")
    page.check("#forever")
    page.fill("#steps", "1")
    page.click("#start")
    page.wait_for_function("Number(document.getElementById('shown').textContent) >= 10", timeout=120_000)
    painted = page.evaluate(
        "() => { const c = document.getElementById('player');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2]; return s; }"
    )
    assert painted > 0  # frames were drawn on the canvas
    assert page.text_content("#ttfc").endswith(" s") and float(page.text_content("#genfps")) > 0

    page.fill("#newprompt", "a small yellow square moves up quickly on a gray background")
    page.select_option("#transition", "1")
    page.click("#apply")
    page.wait_for_function(
        "document.getElementById('current').textContent.startsWith('a small yellow square')", timeout=120_000
    )
    page.click("#stop")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('done')", timeout=120_000)
    screenshot = os.environ.get("HELIOS_SCREENSHOT") or str(tmp_path / "page.png")
    page.screenshot(path=screenshot)

    with page.expect_download(timeout=60_000) as download_info:
        page.click("#download button")
    target = tmp_path / "download.mp4"
    download_info.value.save_as(target)
    frames, fps = read_video(target)
    assert fps == 24 and frames.shape[0] >= 66 and frames.shape[1:] == (64, 128, 3)
