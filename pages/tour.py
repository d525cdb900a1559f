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
known = compute.known_solutions(task.name, split_seed, x) if not task.unconditional else None
what = ("the blank input" if task.unconditional else pres[0]["name"] if pres else "a held-out puzzle")

CFG = ui.CHART


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


many = (f"This one has {len(known)} valid answers: a good reasoner should be able to find *all* of them, not just one."
        if known and len(known) > 1 else "A generator should write a different one every time." if task.unconditional
        else "Searching for it means trying, and backing out of, many partial answers.")
with step(1, "A task with many answers" if (task.multi_solution or task.unconditional) else "A task with one answer",
          f"**{task.name}**. {task.rules} {many}", "recursion", "Open a puzzle in Recursion"):
    st.plotly_chart(figures.board(task, x.numpy(), None, x.numpy(), title=what, height=300, showscale=False),
                    key="tour_puzzle", config=CFG)

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
        proj = compute.pca(ck, x, k=2, **view)
        labels, _ = compute.answer_labels(task, x, tr.final, known)
        st.plotly_chart(figures.pca_figure(proj.coords, proj.explained, labels, len(tr.sup) - 1, height=360),
                        key="tour_pca", config=CFG)

with step(4, "More samples, better answers",
          "Width scaling: draw N trajectories and pick one answer, by **majority vote** or by the **latent process "
          "reward model** (a value head on *h*). Depth scaling: recurse longer, or halt adaptively.",
          "selection", "Compare selection rules"):
    if tr is not None:
        ns = compute.widths(len(tr.final))
        cov = compute.coverage_curve(task, x, tr.final, ns)
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
        st.caption(state.card_summary(card or {}))
