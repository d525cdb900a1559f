"""UI pieces shared by the pages: page header (with the figures' download format), the 'no checkpoint yet' card
with one-click training, the puzzle picker (preset / random test puzzle / typed), the checkpoint loader, the
play/pause step scrubber, the numbers behind a view (JSON and CSV), `advanced`/`knob` (what a lesson link hides),
and `guard`, which turns any error into a message."""
from __future__ import annotations

import contextlib
import os
import time
import traceback
from pathlib import Path

import plotly.io as pio
import streamlit as st
import torch

from app import compute, figures, state, views
from app.compute import UserError

PAGES = {}  # filled by app/explorer.py: name -> st.Page
# every figure's toolbar: hover tools off, the camera on; it saves in the format the page header sets
CHART = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d", "autoScale2d", "toggleSpikelines",
                                                         "sendChartToCloud"]}
FORMATS = {"png": "PNG", "svg": "SVG"}  # Plotly.js draws both in the browser: no kaleido, no server round trip
# the trace types of the app's plotly.js bundle (scripts/plotly), which app/plot.js draws with; a figure with
# others (3-D) is st.plotly_chart's, with its full bundle
TRACES = {"bar", "heatmap", "image", "scatter"}
BUNDLE = "app/static/plotly-gram-4.1.1.min.js"  # its URL below the server's base path
PLOT = st.components.v2.component("gram_plot", js=(Path(__file__).parent / "plot.js").read_text(), isolate_styles=False)


def css() -> None:
    try:
        st.html(f"<style>{(state.ASSETS / 'style.css').read_text()}</style>")
    except OSError:
        pass


def header(title: str, lead: str) -> None:
    """The page's title and lead, and (outside a lesson) the format every figure's camera button saves in: the
    control comes first on the page, so every figure below is drawn with it."""
    key = state_key("g", "fig", "png", valid=lambda v: v in FORMATS)
    text = f"<div class='gram-title'>{title}</div><div class='gram-lead'>{lead}</div>"
    if not advanced():
        st.html(text)
        return
    a, b = st.columns([6, 1])
    with a:
        st.html(text)
    b.segmented_control("Save figures as", list(FORMATS), format_func=FORMATS.get, key=key, width="stretch",
                        help="The camera button in each figure's toolbar downloads it in this format: PNG at twice "
                             "the screen's resolution, or SVG, which stays sharp at any size on a slide (a Sudoku "
                             "board is a picture in both).")


def advanced() -> bool:
    """Whether to draw a page's advanced controls: not under a lesson link (?g_lesson=true), which shows one
    focused view, as TensorFlow Playground does."""
    return not st.session_state.get("g_lesson", False)


def knob(widget, *args, key: str, **kwargs):
    """An advanced control: `widget(*args, key=key, **kwargs)`, or under a lesson link its value (the link's or
    the default, bound to `key` by state_key) without drawing it."""
    return widget(*args, key=key, **kwargs) if advanced() else st.session_state[key]


@contextlib.contextmanager
def guard(what: str = "this view"):
    """Errors a user can cause become st.error; unexpected ones a short message (details go to the log)."""
    try:
        yield
    except UserError as e:
        st.error(str(e), icon=":material/error:")
    except ValueError as e:
        st.error(f"{e}", icon=":material/error:")
    except Exception as e:  # never a traceback in front of the user
        traceback.print_exc()
        st.error(f"Could not compute {what}: {type(e).__name__}: {e}", icon=":material/error:")


def page_link(name: str, label: str, icon: str | None = None) -> None:
    page = PAGES.get(name)
    if page is not None:
        st.page_link(page, label=label, icon=icon)


def quick_overrides() -> list[str]:
    """The one-click recipe: the task's defaults for a few minutes of CPU (GRAM_APP_QUICK overrides, for tests)."""
    env = os.environ.get("GRAM_APP_QUICK")
    if env:
        return [s for s in env.split(",") if s]
    return ["steps=600", "eval_every=100"]


def start_quick_training(task: str, mode: str) -> None:
    from app import training

    try:
        cfg = training.build_config(task, mode, quick_overrides())
        name = f"{task}-{mode}-{time.strftime('%m%d-%H%M%S')}"
        training.start(cfg, state.runs_root() / name, name)
        st.session_state["train_job"] = name
    except Exception as e:
        st.error(f"Could not start training: {e}")
        return
    if "train" in PAGES:
        st.switch_page(PAGES["train"])


def need_checkpoint(sel: dict, what: str = "this page"):
    """The selected checkpoint, or a clear card with a one-click training button and st.stop()."""
    ck = sel.get("ckpt")
    if ck is not None:
        return ck
    task, mode = sel["task"], sel["mode"]
    with st.container(border=True):
        st.markdown(f"#### No {state.MODE_LABELS.get(mode, mode)} checkpoint for **{task}** yet")
        st.write(f"{what.capitalize()} needs a trained model. Shipped checkpoints live in "
                 f"`{state.checkpoints_root()}/{task}[-mode]/`; you can also upload one in the sidebar, or train one "
                 "here: it runs in the background and appears in the sidebar as soon as it is saved.")
        if st.button(f"Train a {mode} model for {task} now", type="primary", icon=":material/play_arrow:",
                     key="quick_train"):
            start_quick_training(task, mode)
    st.stop()


def load_model(sel: dict, task, what: str = "this page"):
    """The selected checkpoint loaded for `task`: (ck, model, cfg, card); stops the page when there is none
    (after the one-click training card) or it does not load (after the error)."""
    ck = need_checkpoint(sel, what)
    model = None
    with guard("the checkpoint"):
        model, cfg, card = compute.load(ck, task.name)
    if model is None:
        st.stop()
    return ck, model, cfg, card


def step_key(prefix: str, R: int) -> str:
    """The URL-bound `<prefix>_step` index into R steps (last step by default), clamped to the current run."""
    key = state_key(prefix, "step", R - 1, int, valid=lambda v: 0 <= v < R)
    if st.session_state[key] >= R:
        st.session_state[key] = R - 1
    return key


def step_index(prefix: str, R: int) -> int:
    """The step a stepping figure opens at: ?<prefix>_step= from a shared link, else the last one. Moving
    the figure's own slider happens in the browser and does not change it."""
    return int(st.session_state[step_key(prefix, R)])


def _plain(v):
    """A number, a string or an array as JSON-ready Python values (floats to 5 decimals)."""
    import numpy as np

    if isinstance(v, str) or not hasattr(v, "__len__"):
        return round(float(v), 5) if isinstance(v, (float, np.floating)) else v.item() if hasattr(v, "item") else v
    a = np.asarray(v)
    return a.astype(np.float64).round(5).tolist() if a.dtype.kind == "f" else a.tolist()  # float32 prints long


def csv_text(table: dict) -> str:
    """A table given as columns (name -> values, all as long) as CSV, one row per value."""
    import csv
    import io

    cols = {k: _plain(v) for k, v in table.items()}
    if len({len(v) for v in cols.values()}) > 1:
        raise ValueError(f"columns of different lengths: { {k: len(v) for k, v in cols.items()} }")
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(cols)
    cell = lambda v: str(v).lower() if isinstance(v, bool) else v
    w.writerows([cell(v) for v in row] for row in zip(*cols.values()))
    return out.getvalue()


def json_text(tables: dict[str, dict], extra: dict | None = None) -> str:
    """The `extra` numbers and every table (a title -> its columns) as one JSON document."""
    import json

    return json.dumps({**{k: _plain(v) for k, v in (extra or {}).items()},
                       **{t: {k: _plain(v) for k, v in cols.items()} for t, cols in tables.items()}})


def download_numbers(name: str, tables: dict[str, dict], key: str, extra: dict | None = None) -> None:
    """The numbers behind a view, for a slide, a spreadsheet or a notebook: every table (a title -> its columns)
    as one JSON file with the `extra` numbers that are no table, and each table as a CSV file of its own. The
    files are written when asked for (a deep Recursion view's table takes 0.1-0.2 s), not at every rerun."""
    from functools import partial

    with st.popover("The numbers behind this view", icon=":material/download:"):
        st.download_button("All of them (JSON)", partial(json_text, tables, extra), file_name=f"{name}.json",
                           mime="application/json", key=key, icon=":material/data_object:", on_click="ignore")
        for title, table in tables.items():
            slug = title.replace(" ", "-")
            st.download_button(f"{title.capitalize()} (CSV)", partial(csv_text, table), file_name=f"{name}-{slug}.csv",
                               mime="text/csv", key=f"{key}_{slug}", icon=":material/table:", on_click="ignore")


def config(key: str) -> dict:
    """A figure's toolbar settings: the camera saves it as `<key>.png` or `.svg`, as the page header sets."""
    fmt = st.session_state.get("g_fig") or "png"  # a segmented control clicked twice holds None
    return {**CHART, "toImageButtonOptions": {"format": fmt, "filename": f"gram-{key}",
                                              **({"scale": 2} if fmt == "png" else {})}}


def chart(fig, key: str, clicks: bool = False):
    """A figure with the house settings (the toolbar's camera saves it for a slide), drawn by app/plot.js with the
    app's plotly.js bundle where it can be, else by st.plotly_chart. The bundle comes from the app's static files, which
    .streamlit/config.toml serves. clicks: a click on a point reruns the page with it in the returned selection
    (`result["selection"]["points"]`, also in st.session_state[key])."""
    spec = fig.to_dict()
    if not st.get_option("server.enableStaticServing") or \
            any(t.get("type", "scatter") not in TRACES for t in spec.get("data", [])):
        kw = {"on_select": "rerun", "selection_mode": "points"} if clicks else {}
        return st.plotly_chart(fig, key=key, config=config(key), **kw)
    # as JSON bytes: a dict would be serialised twice (once sorted, for the element's identity), and anything
    # but bytes or a mapping is first checked for being a dataframe, which imports pandas (~1 s in a session's
    # first figure)
    base = st.get_option("server.baseUrlPath").strip("/")
    payload = pio.to_json({"figure": spec, "config": config(key), "clicks": clicks,
                           "bundle": "/".join(["", *([base] if base else []), BUNDLE])}, validate=False).encode()
    return PLOT(data=payload, key=key, **({"on_selection_change": lambda: None} if clicks else {}))


def stepping_chart(fig: dict, key: str, clicks: bool = False):
    """A figure that carries its steps as frames (app.stepfig): drawn once, stepped in the browser."""
    return chart(figures.Spec(fig), key, clicks)


def need_partner(sel: dict, mode: str, key: str):
    """A checkpoint of the same task in another mode (for side-by-side views), or a small hint and None."""
    ck = state.partner(sel["task"], mode, exclude=None if sel.get("ckpt") is None else sel["ckpt"].path)
    if ck is None:
        st.info(f"No {state.MODE_LABELS.get(mode, mode)} checkpoint for {sel['task']} to compare with.",
                icon=":material/compare:")
        if st.button(f"Train a {mode} model", key=key, icon=":material/play_arrow:"):
            start_quick_training(sel["task"], mode)
    return ck


def noise_scale(prefix: str, default: float = 1.0) -> float:
    """The one stochastic knob every sampling page shares, bound to the URL; opens at the card's value."""
    key = state_key(prefix, "temp", default, float, valid=lambda v: 0 <= v <= 2)
    return knob(st.slider, "Noise scale", 0.0, 2.0, step=0.1, key=key,
                help="Scales the standard normal behind the guidance noise; 0 follows the learned mean.")


def partner_trace(task, ck, x: torch.Tensor, **trace_kwargs):
    """The other mode (GRAM <-> deterministic) and the same rollout on its checkpoint, for side-by-side views;
    the trace is None when there is no such checkpoint or its rollout fails (the page still shows its own)."""
    mode = "deterministic" if ck.mode != "deterministic" else "gram"
    pck = state.partner(task.name, mode, exclude=ck.path)
    if pck is not None:
        with guard("the comparison rollout"):
            compute.load(pck, task.name)
            return mode, compute.trace(pck, x, **trace_kwargs)
    return mode, None


def puzzle_picker(task, seed: int, prefix: str, split_seed: int = 0) -> torch.Tensor | None:
    """Preset / random test puzzle of the checkpoint's own split (its train.seed) / typed puzzle, bound to the
    URL. Returns input tokens (S,) or None (with an error shown) when a typed puzzle does not parse. An
    unconditional task has one input, the blank one."""
    if task.unconditional:
        st.markdown("Input: **blank** (unconditional: every sample is drawn from nothing)")
        return task.empty_input()
    pres = state.presets(task.name)
    sources = (["preset"] if pres else []) + ["random test puzzle", "type one"] + \
        (["click to edit"] if task.board in EDITABLE else [])
    src = st.segmented_control("Puzzle", sources, format_func=SOURCE_LABELS.get,
                               key=state_key(prefix, "src", sources[0], valid=lambda v: v in sources),
                               label_visibility="collapsed") or sources[0]
    if src == "preset":
        names = [p["name"] for p in pres]
        k = st.selectbox("Preset", range(len(names)), format_func=lambda i: names[i],
                         key=state_key(prefix, "preset", 0, int, valid=lambda v: 0 <= v < len(names)))
        return task.parse(pres[k]["puzzle"])
    if src == "click to edit":
        return board_editor(task, prefix, views.default_input(task, split_seed))
    if src == "random test puzzle":
        split = task.split("test", split_seed)
        i = st.number_input(f"Test puzzle # (0-{len(split) - 1})", 0, len(split) - 1,
                            key=state_key(prefix, "idx", seed % len(split), int, valid=lambda v: 0 <= v < len(split)))
        return split.inputs[int(i)]
    example = pres[0]["puzzle"] if pres else ""
    text = st.text_area("Puzzle text", key=state_key(prefix, "text", example),
                        help="N-Queens: one row per line (or rows separated by '/'), '.' empty, 'Q' queen.")
    try:
        return task.parse(text)
    except ValueError as e:
        st.error(f"That puzzle does not parse: {e}", icon=":material/error:")
        return None
    except Exception as e:
        st.error(f"That puzzle does not parse ({type(e).__name__}: {e})", icon=":material/error:")
        return None


EDITABLE = ("queens", "sudoku", "graph")
# short enough for the four to fit a third of a wide page; the values stay what links hold
SOURCE_LABELS = {"preset": "preset", "random test puzzle": "random", "type one": "type", "click to edit": "edit"}


def board_editor(task, prefix: str, start: torch.Tensor) -> torch.Tensor | None:
    """An input edited by clicking its board: a queen placed or taken away, a digit written or erased, an edge
    drawn between two clicked nodes. Returns the input, or None (with the broken rule on the board and in
    words) while it breaks one. The edited input lives in the session, under `<prefix>_edit`."""
    key, n_key = f"{prefix}_edit", f"{prefix}_edits"
    if len(st.session_state.get(key, [])) != task.seq_len:
        st.session_state[key] = start.tolist()
        st.session_state[n_key] = 0
    x = torch.tensor(st.session_state[key])
    value = None
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    if task.board == "sudoku":
        value = c1.segmented_control("Digit to write", ["erase", *range(1, 10)], key=f"{prefix}_digit",
                                     default=1)
        value = None if value in (None, "erase") else int(value)
    else:
        c1.caption("Click a node, then another: the edge between them is drawn or removed." if task.board == "graph"
                   else "Click a cell to place a queen or take one away.")
    if c2.button("Start again", key=f"{prefix}_edit_reset", icon=":material/restart_alt:"):
        st.session_state[key] = start.tolist()
        st.session_state[n_key] += 1
        st.session_state.pop(f"{prefix}_pending", None)
        st.rerun()
    pending = st.session_state.get(f"{prefix}_pending")
    chart_key = f"{prefix}_editor_{st.session_state[n_key]}"  # a new chart after each edit: its selection is spent
    ev = chart(figures.board_editor(task, x, pending), chart_key, clicks=True)
    try:
        pts = ev["selection"]["points"] if ev else []
    except (KeyError, TypeError):
        pts = []
    if pts and "customdata" in pts[0]:
        cd = pts[0]["customdata"]
        target = int(cd[0] if isinstance(cd, (list, tuple)) else cd)
        if task.board == "graph" and pending is None:
            st.session_state[f"{prefix}_pending"] = target
        else:
            try:
                edited = task.edit(x, (pending, target) if task.board == "graph" else target, value)
                st.session_state[key] = edited.tolist()
            except ValueError as e:
                st.warning(str(e), icon=":material/touch_app:")
            st.session_state.pop(f"{prefix}_pending", None)
        st.session_state[n_key] += 1
        st.rerun()
    try:
        return task.parse(task.format_input(x))
    except ValueError as e:
        st.error(f"This board breaks a rule: {e}. The cells at fault are red; click them to change them.",
                 icon=":material/error:")
        return None


def state_key(prefix: str, name: str, default, cast=str, valid=None) -> str:
    key = f"{prefix}_{name}"
    state.bind(key, default, cast, valid)
    return key


# --- the Tour's story: its five steps' text, fitted to the task, the checkpoint's mode and the puzzle -----------
def tour_story(task, mode: str, n_known: int | None, n_samples: int) -> list[tuple[str, str]]:
    """(title, text) of each of the Tour's five steps. Each text reads on its own, without touching anything,
    and says what its figure shows for this task: n_known is the number of valid answers of the puzzle shown
    (None when unknown or unconditional), n_samples the trajectories its figures draw."""
    kind = getattr(task, "board", "tokens")
    uncond = task.unconditional
    thing = ("digit" if kind == "image" else "grid") if uncond else "answer"  # what one sample ends on
    shown = {"queens": "board", "sudoku": "grid", "graph": "colouring", "image": "image",
             "grid": "grid"}.get(kind, "answer")
    many = uncond or (task.multi_solution and n_known != 1)
    noisy = mode in ("gram", "noise")

    if uncond:
        title1, end1 = "Generating from nothing", f"A generator should make a new {thing} every time."
    elif n_known == 1 or not task.multi_solution:
        title1 = "A puzzle with one answer"
        end1 = ("This one has a single valid answer. " if task.multi_solution else "") + \
            "Finding it means trying, and backing out of, many partial answers."
    else:
        title1 = "A puzzle with many answers"
        end1 = (f"This one has {n_known} valid answers" if n_known else "Puzzles like this one have several valid "
                "answers") + ": a good reasoner should find *all* of them, not just one."
    story = [(title1, f"**{task.name}**. {task.rules} {end1}")]

    recursion = ("A single latent state *h* is refined by the same network again and again (a flat loop, no "
                 "fast and slow states)" if mode == "flat" else
                 "A latent state *z = (h, l)* is refined step after step: the fast state *l* several times, then the "
                 "slow state *h*, which the decoder reads")
    story.append(("Reasoning is recursion in latent space",
                  f"{recursion}. Below, one trajectory's {shown} as the decoder reads it after successive supervision "
                  f"steps: the {'image sharpens into a digit' if kind == 'image' else thing + ' takes shape'}."))

    settle = (f"end on different {thing}s" if uncond else "settle on different answers" if many
              else "explore before they meet at the one answer, or miss it")
    if mode == "gram":
        noise = ("Each transition adds noise *eps ~ N(mu_p, sigma_p^2)* to *h*, from a **learned prior** that "
                 f"proposes where and how much to explore. Trajectories that start from the same *z0* drift apart and "
                 f"{settle}.")
    elif mode == "noise":
        noise = ("Each transition adds noise of a fixed scale to *h* (this checkpoint's prior is not learned). "
                 f"Trajectories that start from the same *z0* drift apart and {settle}.")
    else:
        noise = ("This checkpoint adds no noise: every trajectory from the same *z0* takes the same path to the same "
                 "answer, so the lines below lie on top of each other. GRAM's learned noise is what lets them part.")
    ends = f"where it ends (each distinct {thing} a colour of its own)" if uncond else f"the {thing} it ends on"
    story.append(("Noise makes trajectories diverge" if noisy else "Without noise, one path",
                  f"{noise} Below, each of {n_samples} trajectories is a line: its *h* over every transition, on the "
                  f"two main principal components, coloured by {ends}."))

    if uncond:
        title4 = "More samples, more variety"
        width = (f"For a generator, width is variety. Below, the distinct valid {thing}s among the first N samples, "
                 "against N: when every sample is new, the curve follows the diagonal.")
    elif many:
        title4 = "More samples, more answers"
        width = ("Width scaling draws N trajectories and keeps what they find. Below, the distinct valid answers "
                 "among the first N samples of this puzzle, against N. To answer with one of them, a selector keeps "
                 "the most frequent (**majority vote**) or the one the **latent process reward model**, a value head "
                 "on *h*, scores highest.")
    else:
        title4 = "More samples, better odds"
        width = ("With one answer to find, width buys chances. Below, whether any of the first N samples has found it "
                 "(1) or not yet (0), against N. A selector then keeps one answer: the most frequent (**majority "
                 "vote**) or the one the **latent process reward model**, a value head on *h*, scores highest.")
    if not noisy:
        width += " Without noise every sample is the same, so the curve stays where one sample puts it."
    story.append((title4, width + " Depth scaling is the other axis: recurse longer, or halt when the halting head is "
                                  "confident."))

    target = f"the target {thing}" if uncond else "the answer"
    story.append(("Train it yourself",
                  f"Training maximises an evidence lower bound: a **posterior** that sees {target} steers the noise, "
                  "and a KL term teaches the **prior** to steer the same way without it. The Train page draws the "
                  "prior's held-out accuracy beside the posterior's as a run goes: when the prior catches up, the "
                  "guidance is learned; when only the posterior is right, it is leaking the answer."))
    return story
