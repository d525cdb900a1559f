"""End to end: `streamlit run app/main.py` on a free port, driven by Playwright in headless Chromium.

Opens every page, moves the recursion scrubber, runs a short training from the Train page, and saves a
screenshot of each step under $GRAM_E2E_SHOTS (default: <tmp>/gram-explorer-e2e)."""
from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import testkit  # noqa: E402

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(testkit.CHROMIUM).exists(), reason=f"no Chromium at {testkit.CHROMIUM}")

PAGES = {"tour": 4, "recursion": 5, "trajectories": 4, "selection": 3, "coverage": 1, "generation": 3, "train": 0}


@pytest.fixture(scope="module")
def shots():
    d = Path(os.environ.get("GRAM_E2E_SHOTS", Path(tempfile.gettempdir()) / "gram-explorer-e2e"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    testkit.make_checkpoint(root / "ck" / "nqueens7", "nqueens7", "gram")
    testkit.make_checkpoint(root / "ck" / "nqueens7-deterministic", "nqueens7", "deterministic")
    env = {"GRAM_CHECKPOINTS": str(root / "ck"), "GRAM_APP_RUNS": str(root / "runs"), "OMP_NUM_THREADS": "1"}
    with testkit.Server(env) as srv:
        srv.wait_healthy(90)
        yield srv


@pytest.fixture(scope="module")
def chromium(server):
    with playwright_api.sync_playwright() as p:
        b = testkit.launch_browser(p)
        yield b
        b.close()


def new_page(chromium):
    page = chromium.new_page(viewport={"width": 1500, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


def no_traceback(page):
    assert page.locator("[data-testid='stException']").count() == 0, page.locator("[data-testid='stException']").first.inner_text()


def test_every_page_renders(server, chromium, shots):
    page, errors = new_page(chromium)
    for name, charts in PAGES.items():
        page.goto(f"{server.url}/" + ("" if name == "tour" else name))  # the default page lives at /
        if charts:
            testkit.wait_rendered(page, charts=charts)
        else:
            page.get_by_text("Start training").wait_for(timeout=60_000)
            testkit.wait_idle(page)
        no_traceback(page)
        assert page.get_by_text("Page not found").count() == 0, name
        assert page.locator("[data-testid='stAlertContentError']").count() == 0, name
        page.screenshot(path=str(shots / f"page_{name}.png"), full_page=True)
    assert not errors, errors
    page.close()


def test_scrubber_moves_the_figures(server, chromium, shots):
    page, _ = new_page(chromium)
    page.goto(f"{server.url}/recursion")
    testkit.wait_rendered(page, charts=5)
    label = page.get_by_text(re.compile(r"step 8\.2")).first
    label.wait_for()
    slider = page.locator("[data-testid='stSlider']").filter(has_text="Step (supervision").get_by_role("slider")
    slider.focus()
    slider.press("ArrowLeft")
    page.get_by_text(re.compile(r"step 8\.1")).first.wait_for(timeout=30_000)
    testkit.wait_idle(page)
    assert "rec_step=14" in page.url
    no_traceback(page)
    page.screenshot(path=str(shots / "recursion_scrubbed.png"), full_page=True)
    # the view is shareable: the same URL reopens the same step
    page.goto(page.url)
    testkit.wait_rendered(page, charts=5)
    page.get_by_text(re.compile(r"step 8\.1")).first.wait_for(timeout=30_000)
    page.close()


def test_short_training_from_the_train_page(server, chromium, shots):
    page, _ = new_page(chromium)
    page.goto(f"{server.url}/train")
    page.get_by_text("Start training").wait_for(timeout=60_000)
    page.get_by_label("Optimiser steps").fill("3")
    page.get_by_label("Batch").fill("8")
    page.get_by_label("More settings (key=value, comma-separated)").fill("D=32, n_layers=1, n_sup=2, eval_samples=8")
    page.get_by_role("button", name=re.compile("Start training")).click()
    page.get_by_text(re.compile(r"done: step 3 of 3")).wait_for(timeout=120_000)
    testkit.wait_rendered(page, charts=1)
    no_traceback(page)
    page.screenshot(path=str(shots / "train_done.png"), full_page=True)
    # the new checkpoint opens in Recursion
    page.get_by_role("button", name=re.compile("Open in Recursion")).click()
    testkit.wait_rendered(page, charts=4)
    no_traceback(page)
    page.screenshot(path=str(shots / "recursion_trained.png"), full_page=True)
    page.close()
