"""Tour: what GRAM is, in five steps, each a small live figure and a link to its page."""
from __future__ import annotations

import contextlib

import numpy as np
import streamlit as st
import torch

from app import compute, figures, state, ui
from gram import analysis
from gram.tasks import get_task

sel = state.selection()
task = get_task(sel["task"])
ui.header("Generative Recursive Reasoning, in five steps",
          "A GRAM model answers a puzzle by refining a latent state over and over. Unlike a deterministic "
          "recursive reasoner, each refinement draws a little <b>learned noise</b>, so many sampled "
          "trajectories explore <i>different</i> valid answers. Every figure below is live, from the "
          "selected checkpoint.")

pres = state.presets(task.name)
x = task.parse(pres[0]["puzzle"]) if pres else task.split("test", 0).inputs[0]
ck = sel.get("ckpt")
tr = None
if ck is not None:
    with ui.guard("the live figures"):
        _, cfg, _ = compute.load(ck, task.name)
        tr = compute.trace(ck, x, n=24, seed=sel["seed"], n_sup=max(cfg.train.n_sup, 8), record="transitions")
else:
    st.info(f"No {sel['mode']} checkpoint for {task.name} yet: the figures below need one. "
            "Pick another mode in the sidebar, upload one, or train one on the Train page.", icon=":material/info:")

CFG = {"displayModeBar": False, "staticPlot": False}


@contextlib.contextmanager
def step(n: int, title: str, text: str, page: str, link: str):
    """One step of the tour: a divider (after the first), the text and link on the left; the body of the
    `with` block draws the live figure on the right."""
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


with step(1, "A puzzle with many answers",
          f"**{task.name}**: complete the board so that no two queens attack each other. The given queens "
          "(amber) allow several completions: a good reasoner should be able to find *all* of them, not just one.",
          "recursion", "Open a puzzle in Recursion"):
    st.plotly_chart(figures.board(task, x.numpy(), None, x.numpy(), title=pres[0]["name"] if pres else "a test puzzle",
                                  height=300, showscale=False), key="tour_puzzle", config=CFG)

with step(2, "Reasoning is recursion in latent space",
          "A latent state *z = (h, l)* is refined step after step: the fast state *l* several times, then the slow "
          "state *h*, which the decoder reads. Below: one trajectory's board after successive supervision steps.",
          "recursion", "Scrub through the recursion"):
    if tr is not None:
        T = int(tr.trans.max())
        ends = [k for k in range(len(tr.sup)) if int(tr.trans[k]) == T]
        pick = ends[:: max(1, len(ends) // 5)][:5]
        st.plotly_chart(figures.board_grid(task, [tr.pred[k, 0].numpy() for k in pick],
                                           [f"step {int(tr.sup[k])}" for k in pick], given=x.numpy(),
                                           probs=[tr.probs[k, 0].float().numpy() for k in pick], ncols=5,
                                           height_per_row=170), key="tour_steps", config=CFG)

with step(3, "Noise makes trajectories diverge",
          "Each transition adds noise *eps ~ N(mu(u), sigma(u)^2)* to *h*, from a **learned prior**. Trajectories "
          "that start at the same *z0* drift apart and settle on different answers. Each line is one trajectory, "
          "projected on the two main principal components, coloured by its final answer.",
          "trajectories", "Explore trajectories"):
    if tr is not None:
        proj = analysis.pca(tr.h, k=2)
        labels, _ = compute.answer_labels(task, x, tr.final, compute.known_solutions(task.name, 0, x))
        st.plotly_chart(figures.pca_figure(proj.coords, proj.explained, labels, len(tr.sup) - 1, height=360),
                        key="tour_pca", config=CFG)

with step(4, "More samples, better answers",
          "Width scaling: draw N trajectories and pick one answer, by **majority vote** or by the **latent process "
          "reward model** (a value head on *h*). Depth scaling: recurse longer, or halt adaptively.",
          "selection", "Compare selection rules"):
    if tr is not None:
        ns = compute.widths(len(tr.final))
        cov = compute.coverage_curve(task, x, tr.final, ns)
        known = compute.known_solutions(task.name, 0, x)
        series = {"distinct valid answers found": cov}
        fig = figures.curves(ns, series, "distinct valid answers against the number of samples N", "N samples",
                             "answers found", colors={"distinct valid answers found": figures.GRAM}, height=300)
        if known:
            fig.add_hline(y=len(known), line=dict(dash="dash", color=figures.MUTED),
                          annotation_text=f"all {len(known)} answers")
        st.plotly_chart(fig, key="tour_cov", config=CFG)

with step(5, "Train it yourself",
          "Training maximises an evidence lower bound: a **posterior** that sees the answer steers the noise, and "
          "a KL term teaches the **prior** to steer the same way without it. Watch the prior catch up (or not: "
          "when only the posterior is right, it is leaking the answer).",
          "train", "Train a model"):
    if ck is not None:
        card = state._read_card(__import__("pathlib").Path(ck.path)) or {}
        m1, m2, m3 = st.columns(3)
        m1.metric("parameters", f"{card.get('parameters', 0) / 1e6:.2f} M")
        m2.metric("training steps", card.get("steps", "?"))
        acc = state.card_accuracy(card)
        m3.metric(*(acc or ("accuracy", "n/a")))
