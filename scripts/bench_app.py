"""App benchmark, in headless Chromium, beside the floor measured in the same run:

    python scripts/bench_app.py [--checkpoints nqueens7,sudoku,...] [--pages recursion,...] [--no-warm]

The floor is an empty Streamlit page with one Plotly figure, served and opened the same way: absolute
times move with the machine, the margin over the floor is what the app adds.

1. cold start: from launching the server to the page drawn in a fresh browser tab (the floor's page; the
   app's Tour), and the floor's open and reopen: each the median of --floor-repeats runs;
2. per page x shipped checkpoint, on one server started for the run and ready (it answers app/main.py's
   READY_PATH once it has imported what the pages need; the cold start above opens the Tour without waiting for
   that): first open (a new session: the server's memory caches are cold for that view, the disk cache is what `python -m app.warm` made, which
   this script runs first unless --no-warm), reopen (a new tab of the same browser on the same link), and one step of a stepping
   figure (a click on its slider until the step label and figure are redrawn, timed in the page).

With --against DIR (another checkout, e.g. `git worktree add DIR COMMIT`), instead: both served side by side and each
view of 2. opened on both in turn, the order alternating, with the median ratios of the pairs (on a machine whose
speed drifts within a run, the pairs still compare the code).

Prints a Markdown table and a JSON line. The library must not import Streamlit, so this lives outside
`python -m gram bench`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from app import testkit

PAGES = ["tour", "recursion", "trajectories", "selection", "coverage", "generation"]
STEPPING = {"recursion", "trajectories", "generation"}
CHECKPOINTS = ["nqueens7", "nqueens8", "nqueens10", "graph_coloring8", "graph_coloring10", "sudoku", "sudoku_uncond", "mnist"]
FLOOR = """import plotly.graph_objects as go
import streamlit as st
st.plotly_chart(go.Figure(go.Scatter(y=[1, 3, 2])))
"""
# st.plotly_chart's figures and app/plot.js's
CHARTS = '[data-testid="stPlotlyChart"], [data-testid="stBidiComponentRegular"]'
DRAWN = """() => {
  const w = document.querySelector('[data-testid="stStatusWidget"]');
  if (w && (w.innerText.includes('Running') || w.innerText.includes('Stop'))) return false;
  if (document.querySelector('[data-testid="stSpinner"]')) return false;
  const charts = [...document.querySelectorAll(CHARTS)];
  return charts.length > 0 && charts.every(c => c.querySelector('.main-svg'));
}""".replace("CHARTS", repr(CHARTS))
# the first step of the first stepping figure, as a move of its slider runs it (app/plot.js's own player, or
# st.plotly_chart's Plotly slider); resolve when the figure is redrawn
STEP = """async () => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')].find(g => g._gramSpec || (g.layout && g.layout.sliders));
  if (!gd) return null;
  const names = gd._gramSpec ? gd._gramSpec.names : gd.layout.sliders[0].steps.map(s => s.args[0][0]);
  const step = gd._gramStep || (name => (gd._gramPlotly || window.Plotly).animate(gd, [name], {mode: 'immediate',
                                         frame: {duration: 0, redraw: true}, transition: {duration: 0}}));
  const t0 = performance.now();
  await step(names[0]);
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const t1 = performance.now();
  await step(names[names.length - 1]);  // back to the last step for the next repeat
  return {ms: t1 - t0};
}"""


def drawn(page, timeout_ms=180_000) -> None:
    page.wait_for_function(DRAWN, timeout=timeout_ms, polling=50)


def cold_start(browser, main: str, env: dict, path: str = "/", cwd: str | None = None) -> float:
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    srv = testkit.Server(env, main=main, cwd=cwd)
    with srv:
        srv.wait_healthy(180)
        page.goto(srv.url + path)
        drawn(page)
        t = time.perf_counter() - srv.started
    page.close()
    return t


def open_view(browser, url: str) -> tuple[float, object]:
    """A first open: a fresh browser profile (nothing cached), as a link opened for the first time."""
    ctx = browser.new_context(viewport={"width": 1500, "height": 1000})
    return open_tab(ctx, url), ctx


def open_tab(ctx, url: str) -> float:
    """A new tab of the same browser on the link (its HTTP cache warm, as a reopened view is)."""
    page = ctx.new_page()
    t0 = time.perf_counter()
    page.goto(url)
    drawn(page)
    return time.perf_counter() - t0


def view_row(browser, base: str, name: str, ck: str, repeat: int) -> dict:
    """One view on a running server: its first open, reopen and (for a stepping page) one step."""
    task = json.loads((ROOT / "checkpoints" / ck / "config.json").read_text())["train"]["task"]
    url = f"{base}/{'' if name == 'tour' else name}?g_task={task}&g_ckpt={ck}"
    first, ctx = open_view(browser, url)
    row = {"page": name, "checkpoint": ck, "first_s": round(first, 2)}
    errors = ctx.pages[0].locator("[data-testid='stException'], [data-testid='stAlertContentError']")
    if errors.count():
        row["error"] = errors.first.inner_text()[:200]
    row["reopen_s"] = round(open_tab(ctx, url), 2)
    if name in STEPPING:
        ms = [m["ms"] for m in (ctx.pages[-1].evaluate(STEP) for _ in range(repeat)) if m]
        if ms:
            row["step_ms"] = round(statistics.median(ms), 1)
    ctx.close()
    return row


def against(browser, other: Path, env: dict, views: list, repeat: int, cold_repeats: int) -> dict:
    """This checkout and another (e.g. `git worktree add DIR COMMIT`): their cold starts in turn, then both served
    side by side, each view opened on both in turn (the order alternating): on a machine whose speed drifts, the
    pairs compare the code."""
    mains = {"this": (testkit.MAIN, None), "other": (str(other / "app" / "main.py"), str(other))}
    cold = [{side: cold_start(browser, mains[side][0], env, cwd=mains[side][1])
             for side in (("this", "other") if k % 2 == 0 else ("other", "this"))} for k in range(cold_repeats)]
    print(json.dumps({"cold_s": cold}), file=sys.stderr, flush=True)
    servers = {side: testkit.Server(env, main=m, cwd=cwd) for side, (m, cwd) in mains.items()}
    rows = []
    with servers["this"], servers["other"]:
        for srv in servers.values():
            srv.wait_healthy(120)
        for k, (ck, name) in enumerate(views):
            row = {}
            for side in (("this", "other") if k % 2 == 0 else ("other", "this")):
                row[side] = view_row(browser, servers[side].url, name, ck, repeat)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"| page | checkpoint | first open: {other} / this | reopen | one step |\n|---|---|---|---|---|")
    for r in rows:
        o, t = r["other"], r["this"]
        step = f"{o['step_ms']:.0f} / {t['step_ms']:.0f} ms" if "step_ms" in o and "step_ms" in t else ""
        errors = "".join(f" error ({side}): {r[side]['error']}" for side in ("other", "this") if "error" in r[side])
        print(f"| {t['page']} | `{t['checkpoint']}` | {o['first_s']:.2f} / {t['first_s']:.2f} s | "
              f"{o['reopen_s']:.2f} / {t['reopen_s']:.2f} s | {step} |" + errors)
    ok = [r for r in rows if "error" not in r["this"] and "error" not in r["other"]]  # a view that failed compares nothing
    ratios = {k: [r["this"][k] / r["other"][k] for r in ok if r["other"].get(k) and r["this"].get(k)]
              for k in ("first_s", "reopen_s", "step_ms")}
    ratios["cold_s"] = [c["this"] / c["other"] for c in cold]
    out = {"bench": "app-against", "other": str(other), "cold_s": cold, "rows": rows,
           "median_this_over_other": {k: round(statistics.median(v), 3) for k, v in ratios.items() if v}}
    print("\ncold start (server launch to the Tour drawn), other / this: "
          + ", ".join(f"{c['other']:.2f} / {c['this']:.2f} s" for c in cold))
    print("\nmedian this / other: " + "; ".join(f"{k} {v}" for k, v in out["median_this_over_other"].items()))
    print(json.dumps(out), flush=True)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoints", default=",".join(CHECKPOINTS), help="shipped checkpoint names")
    ap.add_argument("--pages", default=",".join(PAGES))
    ap.add_argument("--repeat", type=int, default=3, help="step repeats per view")
    ap.add_argument("--no-warm", action="store_true", help="do not run `python -m app.warm` first")
    ap.add_argument("--floor-repeats", type=int, default=3,
                    help="times the floor and the app's cold start are measured (the medians are reported); "
                         "with --against, the times each tree's cold start is")
    ap.add_argument("--against", type=Path, help="another checkout (e.g. `git worktree add DIR COMMIT`): serve both "
                    "and open each view on both in turn instead of the floor's table (see `against`)")
    args = ap.parse_args(argv)
    args.floor_repeats = max(1, args.floor_repeats)
    from playwright.sync_api import sync_playwright

    cks = [c for c in args.checkpoints.split(",") if (ROOT / "checkpoints" / c / "model.safetensors").is_file()]
    pages = args.pages.split(",")
    env = {"GRAM_WARM": "0"}  # the warmer ran before the clock; none competes with the measurements
    out = {"bench": "app", "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
           f"{'avx512_bf16' if 'avx512_bf16' in Path('/proc/cpuinfo').read_text() else 'no avx512_bf16'}",
           "checkpoints": cks}
    views = [(ck, name) for ck in cks for name in pages]
    if not args.no_warm:
        t0 = time.perf_counter()
        for tree in [ROOT] + ([args.against.resolve()] if args.against else []):
            # `python -m` puts the working directory first on sys.path: each tree warms with its own `app`
            subprocess.run([sys.executable, "-m", "app.warm", "--quiet"], cwd=tree, check=True)
        out["warm_s"] = round(time.perf_counter() - t0, 1)
    if args.against:
        with sync_playwright() as p:
            browser = testkit.launch_browser(p)
            return against(browser, args.against.resolve(), env, views, args.repeat, args.floor_repeats)
    floor_main = Path(tempfile.mkdtemp(prefix="gram-floor-")) / "floor.py"
    floor_main.write_text(FLOOR)
    rows = []
    with sync_playwright() as p:
        browser = testkit.launch_browser(p)
        cold = {"floor": [], "app": []}
        for _ in range(args.floor_repeats):  # alternated, so a drift of the machine hits both alike
            cold["floor"].append(cold_start(browser, str(floor_main), env))
            cold["app"].append(cold_start(browser, testkit.MAIN, env))
        out["floor_cold_s"] = round(statistics.median(cold["floor"]), 2)
        out["app_cold_s"] = round(statistics.median(cold["app"]), 2)
        with testkit.Server(env, main=str(floor_main)) as srv:
            srv.wait_healthy(120)
            open_view(browser, srv.url)[1].close()
            opens, reopens = [], []
            for _ in range(args.floor_repeats):
                t, ctx = open_view(browser, srv.url)
                opens.append(t)
                reopens.append(open_tab(ctx, srv.url))
                ctx.close()
            out["floor_open_s"] = round(statistics.median(opens), 2)
            out["floor_reopen_s"] = round(statistics.median(reopens), 2)
        with testkit.Server(env) as srv:
            out["app_ready_s"] = round(srv.wait_healthy(120, path=srv.READY), 2)
            for ck, name in views:
                rows.append(view_row(browser, srv.url, name, ck, args.repeat))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        browser.close()
    out["rows"] = rows
    fo, fr, fc = out["floor_open_s"], out["floor_reopen_s"], out["floor_cold_s"]
    print(f"\nmachine: {out['machine']}; floor: cold start {fc:.2f} s, open {fo:.2f} s, reopen {fr:.2f} s; "
          f"app cold start (Tour drawn) {out['app_cold_s']:.2f} s (+{out['app_cold_s'] - fc:.2f} s over the floor); "
          f"the app's server ready {out['app_ready_s']:.2f} s after launch\n")
    print("| page | checkpoint | first open (over floor) | reopen (over floor) | one step |")
    print("|---|---|---|---|---|")
    for r in rows:
        step = f"{r['step_ms']:.0f} ms" if "step_ms" in r else ""
        print(f"| {r['page']} | `{r['checkpoint']}` | {r['first_s']:.2f} s (+{r['first_s'] - fo:.2f}) | "
              f"{r['reopen_s']:.2f} s (+{r['reopen_s'] - fr:.2f}) | {step} |" + (f" error: {r['error']}" if "error" in r else ""))
    ok = [r for r in rows if "error" not in r]  # a view that showed an error meets no goal
    steps = [r["step_ms"] for r in ok if "step_ms" in r]
    out["goals"] = {"cold start within 2 s over the floor": out["app_cold_s"] - fc <= 2.0,
                    "first opens within 1.5 s over the floor": f"{sum(r['first_s'] - fo <= 1.5 for r in ok)}/{len(rows)}",
                    "reopens within 0.5 s over the floor": f"{sum(r['reopen_s'] - fr <= 0.5 for r in ok)}/{len(rows)}",
                    "steps within 100 ms": f"{sum(m <= 100 for m in steps)}/{len(steps)}"}
    print("\n" + "; ".join(f"{k}: {v}" for k, v in out["goals"].items()))
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
