"""App benchmark (the library must not import Streamlit, so this lives outside `python -m gram bench`):

    python scripts/bench_app.py [--checkpoints DIR] [--repeat 5]

1. cold start: from launching `streamlit run app/main.py` to the first page (the Tour, every figure drawn)
   rendered in headless Chromium;
2. first open of the Recursion page (its figures drawn);
3. one scrubber step: from pressing an arrow key on the step slider to the step label and all figures being
   redrawn (median of --repeat steps).

Uses the shipped checkpoints under checkpoints/ when nqueens7 is there, else a tiny one made in a tmp dir
(say which in the output). Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import testkit  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoints", help="checkpoints root (default: <repo>/checkpoints, else a tiny tmp one)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for the server (0: leave as is)")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="gram-bench-app-"))
    root = Path(args.checkpoints) if args.checkpoints else ROOT / "checkpoints"
    source = "shipped"
    if not (root / "nqueens7" / "model.safetensors").is_file():
        root, source = tmp / "ck", "tiny (D=32, made for this run)"
        testkit.make_checkpoint(root / "nqueens7", "nqueens7", "gram")
        testkit.make_checkpoint(root / "nqueens7-deterministic", "nqueens7", "deterministic")
    env = {"GRAM_CHECKPOINTS": str(root), "GRAM_APP_RUNS": str(tmp / "runs")}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    out = {"bench": "app", "checkpoints": str(root), "checkpoint_kind": source, "machine": platform.processor() or
           platform.machine()}
    with sync_playwright() as p:
        browser = testkit.launch_browser(p)  # started before the clock: we time the app, not Chromium
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        with testkit.Server(env) as srv:
            out["server_healthy_s"] = round(srv.wait_healthy(120), 2)
            page.goto(srv.url + "/")
            testkit.wait_rendered(page, charts=4, timeout_ms=120_000)
            out["first_page_rendered_s"] = round(time.perf_counter() - srv.started, 2)

            t0 = time.perf_counter()
            page.goto(srv.url + "/recursion")
            testkit.wait_rendered(page, charts=5, timeout_ms=120_000)
            out["recursion_page_open_s"] = round(time.perf_counter() - t0, 2)

            slider = page.locator("[data-testid='stSlider']").filter(has_text="Step (supervision").get_by_role("slider")
            times = []
            for _ in range(args.repeat):
                before = page.locator(".js-plotly-plot").first.inner_html()
                slider.focus()
                t0 = time.perf_counter()
                slider.press("ArrowLeft")
                # the first figure (the board) is redrawn for the new step, then the script run ends
                page.wait_for_function(
                    "before => { const e = document.querySelector('.js-plotly-plot'); return e && e.innerHTML !== before; }",
                    arg=before, timeout=30_000)
                testkit.wait_idle(page, 30_000)
                times.append(time.perf_counter() - t0)
            out["scrubber_step_s"] = {"median": round(statistics.median(times), 3), "min": round(min(times), 3),
                                      "max": round(max(times), 3), "n": len(times)}
        browser.close()
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
