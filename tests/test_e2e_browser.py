"""End to end: `streamlit run app/main.py` on a free port, driven by Playwright in headless Chromium.

Opens every page, moves the recursion scrubber, runs a short training from the Train page, and saves a
screenshot of each step under $GRAM_E2E_SHOTS (default: <tmp>/gram-explorer-e2e)."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

from app import testkit

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(testkit.CHROMIUM).exists(), reason=f"no Chromium at {testkit.CHROMIUM}")

PAGES = {"tour": 4, "recursion": 1, "trajectories": 3, "selection": 3, "coverage": 1, "generation": 1, "train": 0}


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


def test_recursion_steps_in_the_browser_without_the_server(server, chromium, shots):
    """A click on the figure's own slider redraws the step in the page: the label, the panel titles and the
    board change, and nothing is sent to the server. Play runs through the steps, pause stops it."""
    page, errors = new_page(chromium)
    sent = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(payload)))
    page.goto(f"{server.url}/recursion?rec_depth=8")
    testkit.wait_rendered(page, charts=1)
    label = lambda: page.locator(".gram-player .gram-label").first.text_content().strip()
    assert label() == "step 8.2"
    board = lambda: page.evaluate("() => JSON.stringify(document.querySelector('.js-plotly-plot').data[0].z)")
    before, n_sent = board(), len(sent)
    rail_el = page.locator(".gram-player input[type=range]").first
    rail_el.scroll_into_view_if_needed()
    rail = rail_el.bounding_box()
    page.mouse.click(rail["x"] + 2, rail["y"] + rail["height"] / 2)  # the left end: the first step
    page.wait_for_function("() => document.querySelector('.gram-player .gram-label').textContent.trim() === 'step 1.1'",
                           timeout=10_000)
    page.wait_for_function(f"() => JSON.stringify(document.querySelector('.js-plotly-plot').data[0].z) !== {before!r}",
                           timeout=10_000)
    page.wait_for_timeout(300)
    assert len(sent) == n_sent, "a step went to the server"
    page.locator(".gram-player .gram-play").first.click()
    page.wait_for_function("() => document.querySelector('.gram-player .gram-label').textContent.trim() !== 'step 1.1'",
                           timeout=10_000)
    page.locator(".gram-player .gram-pause").first.click()
    page.wait_for_timeout(600)  # a step under way when pause lands still finishes
    paused = label()
    page.wait_for_timeout(1200)
    assert label() == paused, "pause did not stop play"
    assert len(sent) == n_sent
    no_traceback(page)
    assert not errors, errors
    page.screenshot(path=str(shots / "recursion_stepped.png"), full_page=True)
    page.close()


SAME_AS_ANIMATE = """async () => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')].find(g => g._gramSpec);
  const names = gd._gramSpec.names;
  const shown = () => JSON.stringify(gd.data);
  // the axes the figure fixes (as neither Plotly.animate nor a frame changes them)
  const keys = Object.keys(gd._fullLayout).filter(k => /^[xy]axis\\d*$/.test(k) && gd._fullLayout[k].autorange === false);
  const fixed = () => JSON.stringify(keys.map(k => [gd._fullLayout[k].autorange, gd._fullLayout[k].range]));
  const axes = fixed();
  const differ = [], moved = [];
  for (const name of [names[0], names[names.length >> 1], names[1], names[names.length - 1]]) {
    await gd._gramStep(name);
    const ours = shown();
    if (fixed() !== axes) moved.push(name);
    await gd._gramPlotly.animate(gd, [name], {mode: 'immediate', frame: {duration: 0, redraw: true}, transition: {duration: 0}});
    if (shown() !== ours) differ.push(name);
  }
  return {differ, moved, n: names.length, fixed: keys.length};
}"""


def test_the_pages_own_stepping_draws_what_plotly_animate_would(server, chromium):
    """app/plot.js steps by restyling the traces a frame names, with the frame merged over its baseframes: each
    step shows what Plotly.animate (st.plotly_chart's stepping) would, on axes that keep their ranges."""
    page, errors = new_page(chromium)
    for path in ("/recursion?rec_depth=8", "/trajectories", "/generation"):
        page.goto(server.url + path)
        testkit.wait_rendered(page, charts=1)
        got = page.evaluate(SAME_AS_ANIMATE)
        assert got["n"] >= 2 and got["fixed"] and got["differ"] == [] and got["moved"] == [], (path, got)
    assert not errors, errors
    page.close()


LAZY_ARRAY_ATTRIBUTES = """async () => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')].find(g => g._gramSpec);
  const P = gd._gramPlotly, S = P.PlotSchema, crawl = S.crawl, names = gd._gramSpec.names;
  let crawls = 0;
  S.crawl = (...a) => { crawls += 1; return crawl(...a); };
  await gd._gramStep(names[0]);
  S.crawl = crawl;
  // where on the page a point of a curve with customdata is, for a real hover
  const k = gd.data.findIndex(t => Array.isArray(t.customdata) && t.type === 'scatter');
  const t = gd._fullData[k], xa = gd._fullLayout[t.xaxis.replace('x', 'xaxis')], ya = gd._fullLayout[t.yaxis.replace('y', 'yaxis')];
  const box = gd.getBoundingClientRect();
  window.__hovered = null;
  gd.on('plotly_hover', e => { window.__hovered = e.points.map(p => [p.customdata, gd.data[p.curveNumber].customdata[p.pointIndex]]); });
  return {crawls, x: box.left + xa._offset + xa.l2p(t.x[1]), y: box.top + ya._offset + ya.l2p(t.y[1])};
}"""


def test_a_step_crawls_no_trace_schema_and_hover_data_keeps_its_array_values(server, chromium):
    """plotly.js crawls every trace's attribute schema on every calc for names that event data (and texttemplate
    drawing, which the app does not use) read; app/plot.js makes that crawl when first read (a step on Recursion
    saves 13-23 ms), and a hover's event data still carries the point's array values."""
    page, errors = new_page(chromium)
    page.goto(f"{server.url}/recursion?rec_depth=8")
    testkit.wait_rendered(page, charts=1)
    got = page.evaluate(LAZY_ARRAY_ATTRIBUTES)
    assert got["crawls"] == 0, got
    page.mouse.move(got["x"], got["y"])
    page.wait_for_function("() => window.__hovered !== null", timeout=10_000)
    hovered = page.evaluate("() => window.__hovered")
    assert hovered and all(shown == data is not None for shown, data in hovered), hovered
    assert not errors, errors
    page.close()


SIZES = """() => [...document.querySelectorAll('.js-plotly-plot')].map(gd => {
  const s = gd._fullLayout._size;
  return {margins: [s.l, s.r, s.t, s.b], autoexpand: gd._fullLayout.margin.autoexpand};
})"""


def test_a_figure_seen_before_is_drawn_with_the_margins_it_was_fitted_to(server, chromium):
    """app/plot.js keeps the margins automargin fitted a figure to (per figure and width); a new tab on the same view
    draws the figures it finds kept with those margins, expansion off (one pass instead of two). A figure first drawn
    at another width (a scrollbar came or went meanwhile) is fitted afresh."""
    ctx = chromium.new_context(viewport={"width": 1500, "height": 1000})
    drawn = []
    for _ in range(2):
        page = ctx.new_page()
        page.goto(server.url + "/trajectories")
        testkit.wait_rendered(page, charts=5)  # all of the page's figures
        drawn.append(page.evaluate(SIZES))
        kept = page.evaluate("() => Object.values(JSON.parse(localStorage.getItem('gram-margins') || '{}'))")
        page.close()
    first, again = drawn
    assert all(f["autoexpand"] for f in first)
    replayed = [a for a in again if not a["autoexpand"]]
    assert replayed and len(kept) >= len(first)
    assert all(a["margins"] in [[k["l"], k["r"], k["t"], k["b"]] for k in kept] for a in replayed)
    ctx.close()


def test_short_training_from_the_train_page(server, chromium, shots):
    page, _ = new_page(chromium)
    page.goto(f"{server.url}/train")
    page.get_by_text("Start training").wait_for(timeout=60_000)
    page.get_by_role("spinbutton", name="Optimiser steps").fill("3")
    page.get_by_role("spinbutton", name="Batch").fill("8")
    page.get_by_label("More settings (key=value, comma-separated)").fill("D=32, n_layers=1, n_sup=2, eval_samples=8")
    page.get_by_role("button", name=re.compile("Start training")).click()
    page.get_by_text(re.compile(r"done: step 3 of 3")).wait_for(timeout=120_000)
    testkit.wait_rendered(page, charts=1)
    no_traceback(page)
    page.screenshot(path=str(shots / "train_done.png"), full_page=True)
    # the new checkpoint opens in Recursion
    page.get_by_role("button", name=re.compile("Open in Recursion")).click()
    testkit.wait_rendered(page, charts=1)
    no_traceback(page)
    page.screenshot(path=str(shots / "recursion_trained.png"), full_page=True)
    page.close()


def test_clicking_a_board_cell_edits_the_puzzle(server, chromium, shots):
    """Your own input by clicking: a click on an empty cell of the editable board places a queen there."""
    page, errors = new_page(chromium)
    page.goto(f"{server.url}/recursion?rec_src=click+to+edit&rec_depth=2")
    testkit.wait_rendered(page, charts=2)
    # the queens' glyph trace of the editor's board; -1 while the rerun replaces the figure
    count = ("() => { const gd = document.querySelectorAll('.js-plotly-plot')[0];"
             " return gd && gd.data && gd.data[1] ? gd.data[1].x.length : -1; }")
    before = page.evaluate(count)
    assert before >= 0
    drag = page.locator(".js-plotly-plot").first.locator(".nsewdrag").first
    drag.scroll_into_view_if_needed()
    box = drag.bounding_box()
    # cell (row 6, col 6) of the 7x7 board: the bottom-right corner, empty in the first preset
    page.mouse.click(box["x"] + box["width"] * 13 / 14, box["y"] + box["height"] * 13 / 14)
    page.wait_for_function(f"() => {{ const n = ({count})(); return n >= 0 && n !== {before}; }}", timeout=30_000)
    testkit.wait_idle(page)
    no_traceback(page)
    page.screenshot(path=str(shots / "board_clicked.png"), full_page=True)
    assert not errors, errors
    page.close()
