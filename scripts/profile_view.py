"""Where a reopen's time goes in the browser, beside the floor's (the empty page of `bench_app.py`):

    python scripts/profile_view.py "/recursion?g_task=nqueens7&g_ckpt=nqueens7" [--repeat 3] [--timeline]

Each view is opened once, then reopened --repeat times in new tabs of the same browser under Chromium's CPU
profiler (a sample every 0.2 ms); prints the main thread's self time per script (PlotlyChart, react-dom, ...,
and "(program)" for the browser's own work) and per function, averaged over the reopens. With --timeline,
instead, when each reopen reached its milestones (ms from the navigation): the server's last message, the
largest message (a figure), Plotly's chunk fetched, the first chart in the page, the last chart drawn. The
numbers in docs/recipe.md ("where a reopen's time goes", "where a reopen waits") come from it.
"""
from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

import bench_app
from app import testkit


# timestamps, in the page, of the server's messages and of the charts appearing and drawing
MILESTONES = """
window.__t = {last_message: 0, largest: [0, 0], first_chart: null, drawn: 0};
const Socket = window.WebSocket;
window.WebSocket = function (...args) {
  const ws = new Socket(...args);
  ws.addEventListener('message', e => {
    const t = performance.now(), n = e.data.byteLength || e.data.size || 0;
    window.__t.last_message = t;
    if (n > window.__t.largest[1]) window.__t.largest = [t, n];
  });
  return ws;
};
window.WebSocket.prototype = Socket.prototype;
new MutationObserver(() => {
  const t = performance.now();
  if (window.__t.first_chart === null && document.querySelector(CHARTS)) window.__t.first_chart = t;
  if (document.querySelector('.main-svg')) window.__t.drawn = t;
}).observe(document, {subtree: true, childList: true});
""".replace("CHARTS", repr(bench_app.CHARTS))
READ = """() => ({...window.__t, chunk: Math.max(0, ...performance.getEntriesByType('resource')
    .filter(r => r.name.includes('PlotlyChart') || r.name.includes('plotly-gram')).map(r => r.responseEnd))})"""


def timeline(ctx, url: str) -> str:
    """One reopen's milestones (ms from the navigation)."""
    page = ctx.new_page()
    page.add_init_script(MILESTONES)
    page.goto(url)
    bench_app.drawn(page)
    t = page.evaluate(READ)
    page.close()
    return (f"last message {t['last_message']:.0f}, largest ({t['largest'][1] / 1e3:.0f} KB) {t['largest'][0]:.0f}, "
            f"Plotly's chunk fetched {t['chunk']:.0f}, first chart {t['first_chart']:.0f}, drawn {t['drawn']:.0f}")


def profile(ctx, url: str) -> tuple[collections.Counter, collections.Counter]:
    """Self time (ms) by script and by (script, function, line) of one open of url in a new tab."""
    page = ctx.new_page()
    cdp = ctx.new_cdp_session(page)
    cdp.send("Profiler.enable")
    cdp.send("Profiler.setSamplingInterval", {"interval": 200})
    cdp.send("Profiler.start")
    page.goto(url)
    bench_app.drawn(page)
    prof = cdp.send("Profiler.stop")["profile"]
    page.close()
    nodes = {n["id"]: n["callFrame"] for n in prof["nodes"]}
    by_script, by_function = collections.Counter(), collections.Counter()
    for node, dt in zip(prof["samples"], prof["timeDeltas"]):
        frame = nodes[node]
        script = frame["url"].split("/")[-1].split(".")[0] or frame["functionName"] or "(native)"
        by_script[script] += dt / 1000
        by_function[(script, frame["functionName"], frame.get("lineNumber"))] += dt / 1000
    return by_script, by_function


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", help="the view's link path, e.g. /recursion?g_task=nqueens7&g_ckpt=nqueens7")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeline", action="store_true", help="milestones of each reopen instead of a CPU profile")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    floor = Path(tempfile.mkdtemp(prefix="gram-floor-")) / "floor.py"
    floor.write_text(bench_app.FLOOR)
    with sync_playwright() as p:
        browser = testkit.launch_browser(p)
        for name, main, path in (("floor", str(floor), "/"), (args.path, testkit.MAIN, args.path)):
            with testkit.Server({"GRAM_WARM": "0"}, main=main) as srv:
                srv.wait_healthy(120)
                ctx = browser.new_context(viewport={"width": 1500, "height": 1000})
                bench_app.open_tab(ctx, srv.url + path)  # the first open: the reopens find the browser's cache warm
                if args.timeline:
                    for _ in range(args.repeat):
                        print(f"{name}: {timeline(ctx, srv.url + path)}", flush=True)
                    ctx.close()
                    continue
                scripts, functions = collections.Counter(), collections.Counter()
                for _ in range(args.repeat):
                    s, f = profile(ctx, srv.url + path)
                    scripts.update(s)
                    functions.update(f)
                ctx.close()
            n = args.repeat
            print(f"== {name}: main-thread self time per reopen, ms")
            print("by script:   " + ", ".join(f"{k} {v / n:.0f}" for k, v in scripts.most_common(12)))
            print("by function: " + "; ".join(f"{k[0]}:{k[1] or '(anonymous)'}@{k[2]} {v / n:.0f}"
                                              for k, v in functions.most_common(15)))


if __name__ == "__main__":
    main()
