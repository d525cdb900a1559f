"""UI pieces shared by the pages: page header, the 'no checkpoint yet' card with one-click training, the
puzzle picker (preset / random test puzzle / typed), the checkpoint loader, the play/pause step scrubber, and
`guard`, which turns any error into a message."""
from __future__ import annotations

import contextlib
import os
import time
import traceback

import plotly.graph_objects as go
import streamlit as st
import torch

from app import compute, figures, state, views
from app.compute import UserError

PAGES = {}  # filled by app/main.py: name -> st.Page
# every figure's toolbar: hover tools off, the camera on (PNG at twice the screen's resolution, for slides)
CHART = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2},
         "modeBarButtonsToRemove": ["lasso2d", "select2d", "autoScale2d", "toggleSpikelines"]}


def css() -> None:
    try:
        st.markdown(f"<style>{(state.ASSETS / 'style.css').read_text()}</style>", unsafe_allow_html=True)
    except OSError:
        pass


def header(title: str, lead: str) -> None:
    st.markdown(f"<div class='gram-title'>{title}</div><div class='gram-lead'>{lead}</div>", unsafe_allow_html=True)


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


def download_numbers(name: str, numbers: dict, key: str) -> None:
    """The numbers behind a view, as JSON, for a slide or a notebook."""
    import json

    import numpy as np

    def plain(v):
        if isinstance(v, str) or not hasattr(v, "__len__"):
            return v
        a = np.asarray(v)
        return a.round(5).tolist() if a.dtype.kind == "f" else a.tolist()

    plain_numbers = {k: plain(v) for k, v in numbers.items()}
    st.download_button("The numbers behind this view (JSON)", json.dumps(plain_numbers), file_name=f"{name}.json",
                       mime="application/json", key=key, icon=":material/download:")


def chart(fig, key: str, **kw):
    """st.plotly_chart with the house settings: the toolbar's camera saves a PNG for a slide."""
    return st.plotly_chart(fig, key=key, config=CHART, **kw)


class _Prebuilt(go.Figure):
    """A figure spec made of plain dicts (app.stepfig; its tests check each against Plotly's schema).
    st.plotly_chart validates a dict by building a Figure from it, which for a view of 48 frames costs more
    than the rollout (0.7 s); a Figure it passes on as its to_dict()."""

    def __init__(self, spec: dict):
        super().__init__()
        self._spec = spec

    def to_dict(self) -> dict:
        return self._spec


def prebuilt(spec: dict) -> go.Figure:
    return _Prebuilt(spec)


def stepping_chart(fig: dict, key: str) -> None:
    """A figure that carries its steps as frames (app.stepfig): drawn once, stepped in the browser."""
    st.plotly_chart(_Prebuilt(fig), key=key, config=CHART)


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
    return st.slider("Noise scale", 0.0, 2.0, step=0.1, key=key,
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
    URL. Returns input tokens (S,) or None (with an error shown) when a typed puzzle does not parse."""
    pres = state.presets(task.name)
    sources = (["preset"] if pres else []) + ["random test puzzle", "type one"] + \
        (["click to edit"] if task.board in EDITABLE else [])
    src = st.segmented_control("Puzzle", sources, key=state_key(prefix, "src", sources[0], valid=lambda v: v in sources),
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
    ev = st.plotly_chart(figures.board_editor(task, x, pending), key=chart_key, on_select="rerun",
                         selection_mode="points", config=CHART)
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
