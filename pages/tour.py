"""Tour: what GRAM is, in five steps, each a small live figure and a link to its page."""
from __future__ import annotations

import contextlib

import streamlit as st

from app import compute, figures, state, ui, views
from gram.tasks import get_task

sel = state.selection()
task = get_task(sel["task"])
ui.header("Generative Recursive Reasoning, in five steps",
          "A GRAM model answers a puzzle by refining a latent state over and over. Unlike a deterministic "
          "recursive reasoner, each refinement draws a little <b>learned noise</b>, so many sampled "
          "trajectories explore <i>different</i> valid answers. Every figure below is live, from the "
          "selected checkpoint.")

ck = sel.get("ckpt")
tr = cfg = card = None
split_seed = 0
if ck is not None:
    with ui.guard("the live figures"):
        _, cfg, card = compute.load(ck, task.name)
        split_seed = cfg.train.seed
x = None
with ui.guard("the puzzle"), compute.readable(task):
    x = views.default_input(task, split_seed)
if x is None:
    st.stop()
if cfg is not None:
    with ui.guard("the live figures"):
        p = views.PAGE["tour"]
        view = dict(n=p["n"], seed=sel["seed"], n_sup=views.depth("tour", card, cfg),
                    temperature=views.temperature(card, cfg), record=p["record"], latents=p["latents"])
        tr = compute.trace(ck, x, **view)
if ck is None:
    st.info(f"No {sel['mode']} checkpoint for {task.name} yet: the figures below need one. "
            "Pick another mode in the sidebar, upload one, or train one on the Train page.", icon=":material/info:")
pres = state.presets(task.name)
known = compute.known_solutions(task.name, split_seed, x)
what = ("the blank input" if task.unconditional else pres[0]["name"] if pres else "a held-out puzzle")


@contextlib.contextmanager
def step(n: int, page: str, link: str):
    """One step of the tour: a divider (after the first), its story and link on the left; the body of the
    `with` block draws the live figure on the right."""
    title, text = story[n - 1]
    if n > 1:
        st.divider()
    a, b = st.columns([1, 1.3], gap="large")
    with a:
        st.markdown(f"<div class='gram-step'>Step {n}</div>", unsafe_allow_html=True)
        st.markdown(f"### {title}")
        st.markdown(text)
        ui.page_link(page, link, icon=":material/arrow_forward:")
    with b:
        yield


final = None if tr is None else task.canonical(tr.final)  # answers, not their spellings: what the figures count
story = ui.tour_story(task, sel["mode"] if ck is None else ck.mode, len(known) if known else None,
                      views.PAGE["tour"]["n"])
with step(1, "recursion", "Open a puzzle in Recursion"):
    ui.chart(figures.board(task, x.numpy(), None, x.numpy(), title=what, height=300), "tour_puzzle")

with step(2, "recursion", "Scrub through the recursion"):
    if tr is not None:
        ends = tr.ends()
        pick = ends[:: max(1, len(ends) // 5)][:5]
        ui.chart(figures.board_grid(task, [tr.pred[k, 0].numpy() for k in pick],
                                    [f"step {int(tr.sup[k])}" for k in pick], given=x.numpy(),
                                    probs=[tr.probs[k, 0].float().numpy() for k in pick], ncols=5,
                                    height_per_row=170), "tour_steps")

with step(3, "trajectories", "Explore trajectories"):
    if tr is not None:
        proj = compute.pca(ck, x, k=views.PAGE["tour"]["pca"], **view)
        labels, _ = compute.answer_labels(task, x, final, known)
        ui.chart(figures.pca_figure(proj.coords, proj.explained, labels, height=360), "tour_pca")

with step(4, "selection", "Compare selection rules"):
    if tr is not None:
        ns = compute.widths(len(final))
        cov = compute.coverage_curve(task, x, final, ns)
        series = {"distinct valid answers found": cov}
        fig = figures.curves(ns, series, "distinct valid answers against the number of samples N", "N samples",
                             "answers found", colors={"distinct valid answers found": figures.GRAM}, height=300,
                             target=(len(known), f"all {len(known)} answers" if len(known) > 1 else "the answer")
                             if known else None)
        ui.chart(fig, "tour_cov")

with step(5, "train", "Train a model"):
    if ck is not None:
        st.caption(state.card_summary(card or {}))
