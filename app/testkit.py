"""Helpers for the app's tests and benchmark: tiny checkpoints, and the app's figures read back from AppTest."""
from __future__ import annotations

import json
from pathlib import Path

TINY = ["D=32", "n_layers=1", "batch=8", "steps=3", "n_sup=2", "eval_samples=8"]
MAIN = str(Path(__file__).resolve().parent / "main.py")  # the server: `streamlit run` it
SCRIPT = str(Path(__file__).resolve().parent / "explorer.py")  # the script it serves: AppTest runs it


def make_checkpoint(directory: str | Path, task: str = "nqueens7", mode: str = "gram", extra: list[str] | None = None) -> Path:
    """A tiny trained checkpoint (a few optimiser steps): enough for every page to have something to draw."""
    from gram.recipes import default_config
    from gram.train import Trainer

    cfg = default_config(task).override(TINY + [f"mode={mode}"] + (extra or []))
    tr = Trainer(cfg)
    tr.fit()
    return tr.save(directory)


def open_page(page: str | None = None, params: dict | None = None, timeout: float = 120):
    """The app under Streamlit's AppTest, run once: the Tour, or `page` opened directly (as a shared link
    /<page>?... does), with `params` as the link's query."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(SCRIPT, default_timeout=timeout)
    if params:
        at.query_params.update(params)
    if page:
        at.switch_page(f"../pages/{page}.py")
    return at.run()


def figures(at) -> dict:
    """{chart key or index: plotly figure dict} for every figure on the AppTest's current page: st.plotly_chart's
    and app/plot.js's (ui.chart)."""
    return {k: spec for k, (spec, _) in _charts(at).items()}


def configs(at) -> dict:
    """{chart key or index: its toolbar config} for every figure on the AppTest's current page."""
    return {k: config for k, (_, config) in _charts(at).items()}


def _charts(at) -> dict:
    out = {}
    charts = [(el.proto, json.loads(el.proto.spec), json.loads(el.proto.config)) for el in at.get("plotly_chart")]
    for el in at.get("bidi_component"):
        if el.proto.component_name == "gram_plot":  # the figure and its config as JSON bytes (ui.chart)
            payload = json.loads(el.proto.bytes)
            charts.append((el.proto, payload["figure"], payload["config"]))
    for k, (proto, spec, config) in enumerate(charts):
        parts = (proto.id or "").split("-", 2)  # '$$ID-<hash>-<user key>'
        out[parts[2] if len(parts) == 3 and parts[2] else str(k)] = spec, config
    return out


def frames(fig: dict) -> list[dict]:
    """A stepping figure's frames as Plotly computes them (a frame on top of its baseframe's, recursively): each
    {'name', 'traces', 'data' (aligned with traces)} is what the figure's traces show at that step, whatever the frame
    itself carries."""
    by_name = {f["name"]: f for f in fig.get("frames", [])}
    out = []
    for f in fig.get("frames", []):
        chain = [f]
        while chain[-1].get("baseframe") in by_name and by_name[chain[-1]["baseframe"]] not in chain:
            chain.append(by_name[chain[-1]["baseframe"]])
        got = {"name": f["name"], "traces": [], "data": []}
        for g in reversed(chain):
            for j, d in zip(g.get("traces", range(len(g.get("data", [])))), g.get("data", [])):
                if j not in got["traces"]:
                    got["traces"].append(j)
                    got["data"].append({})
                k = got["traces"].index(j)
                got["data"][k] = {**got["data"][k], **d}
        out.append(got)
    return out


def trace_names(fig: dict) -> list[str]:
    return [t.get("name", "") for t in fig.get("data", [])]


def trace_types(fig: dict) -> list[str]:
    return [t.get("type", "scatter") for t in fig.get("data", [])]


# --- a real server and a real browser (end-to-end test and `scripts/bench_app.py`) -----------------
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`streamlit run app/main.py` on a free localhost port; a context manager that always stops it."""

    READY = "/gram/ready"  # app/main.py's READY_PATH
    def __init__(self, env: dict | None = None, port: int | None = None, main: str = MAIN, cwd: str | None = None):
        self.port = port or free_port()
        self.env = env or {}
        self.main = main
        # `python -m` puts the working directory first on sys.path: it decides which checkout's `app` is imported
        self.cwd = cwd or str(Path(MAIN).parent.parent)
        self.proc = None
        self.started = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Server":
        import os
        import subprocess
        import sys
        import time

        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "streamlit", "run", self.main, "--server.port", str(self.port),
               "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none", "--global.developmentMode", "false"]
        self.started = time.perf_counter()
        import tempfile

        self.log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: an unread pipe fills and stalls the server
        self.proc = subprocess.Popen(cmd, env=env, cwd=self.cwd, stdout=self.log,
                                     stderr=subprocess.STDOUT, text=True)
        return self

    def wait_healthy(self, timeout: float = 60, path: str = "/_stcore/health") -> float:
        """Seconds from launch until `path` answers "ok": the server listens (health) or, with READY, has done the
        imports every page needs."""
        import time
        import urllib.request

        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"streamlit exited: {self.log.read()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=1) as r:
                    # "ok", not just 200: Streamlit answers an unknown path with its index.html
                    if r.status == 200 and r.read().strip() == b"ok":
                        return time.perf_counter() - self.started
            except OSError:
                pass
            time.sleep(0.1)
        self.log.seek(0)
        raise TimeoutError(f"streamlit did not answer {path} with ok: {self.log.read()[-2000:]}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
                self.proc.wait(5)


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def wait_rendered(page, timeout_ms: int = 60_000, charts: int = 1) -> None:
    """Until the script run is over and at least `charts` Plotly figures are drawn."""
    page.wait_for_function(
        "n => document.querySelectorAll('.js-plotly-plot .main-svg').length >= n", arg=charts, timeout=timeout_ms)
    wait_idle(page, timeout_ms)


def wait_idle(page, timeout_ms: int = 60_000) -> None:
    """Until Streamlit shows no running indicator."""
    page.wait_for_function(
        "() => { const w = document.querySelector('[data-testid=\"stStatusWidget\"]');"
        " return !w || !(w.innerText.includes('Running') || w.innerText.includes('Stop')); }",
        timeout=timeout_ms)
