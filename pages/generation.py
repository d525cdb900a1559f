"""Generation: many samples refining over recursion depth, as a grid per step, an animation, and quality
against depth. Unconditional tasks (MNIST digits, unconditional Sudoku) start from an all-blank input;
conditional tasks show N completions of one puzzle taking shape."""
from __future__ import annotations


import numpy as np
import streamlit as st

from app import compute, figures, state, ui
from gram.tasks import get_task, task_names

sel = state.selection()
task = get_task(sel["task"])
empty = task.empty_input() if task.unconditional else None
ui.header("Generation refines over depth",
          "The same recursion, read as a generator: every sample starts from the same state and sharpens step by "
          "step. For unconditional tasks (binarized MNIST, complete Sudoku boards) the input is blank; for a puzzle, "
          "N different completions take shape at once.")
uncond = [t for t in task_names() if t.startswith(("mnist", "sudoku_uncond"))]
if empty is None:
    msg = "This task is conditional: below, N samples of one puzzle refining."
    if uncond:
        c1, c2 = st.columns([3, 1], vertical_alignment="center")
        c1.info(msg + f" Unconditional tasks: {', '.join(uncond)}.", icon=":material/info:")
        if c2.button(f"Switch to {uncond[0]}", icon=":material/swap_horiz:"):
            st.session_state["_pending"] = {"g_task": uncond[0]}
            st.rerun()
    else:
        st.caption(msg + " (Unconditional MNIST and Sudoku generation appear here once those tasks are installed.)")
ck, model, cfg, card = ui.load_model(sel, task, "generation")

c1, c2, c3 = st.columns([2, 1, 1])
with c1:
    x = empty if empty is not None else ui.puzzle_picker(task, sel["seed"], "gen")
    if empty is not None:
        st.markdown("Input: **blank** (unconditional generation)")
with c2:
    n = st.select_slider("Samples", [4, 8, 12, 16, 24, 32], key=ui.state_key(
        "gen", "n", 12, int, valid=lambda v: v in (4, 8, 12, 16, 24, 32)))
with c3:
    # up to 256: unconditional Sudoku keeps repairing its boards that long (its card is read at depth 256)
    n_sup = st.slider("Depth", 1, 256, key=ui.state_key("gen", "depth", max(16, cfg.train.n_sup), int,
                                                        valid=lambda v: 1 <= v <= 256))
if x is None:
    st.stop()

tr = None
with ui.guard("the samples"):
    tr = compute.trace(ck, x, n=n, seed=sel["seed"], n_sup=n_sup, record="steps", latents="pooled")
if tr is None:
    st.stop()
R = len(tr.sup)
names = [str(int(s)) for s in tr.sup]
valid_rate = np.array([task.is_correct(x[None].expand(n, -1), tr.pred[k]).float().mean().item() for k in range(R)])
distinct = np.array([len({tuple(r) for r in tr.pred[k].tolist()}) for k in range(R)])
conf = tr.probs.float().max(-1).values.mean((1, 2)).numpy()

step_key = ui.step_key("gen", R)


@ui.play_fragment("gen")
def grid():
    i = ui.play_scrubber("gen", step_key, names, "Supervision step")
    ok = task.is_correct(x[None].expand(n, -1), tr.pred[i]).tolist()
    titles = [f"#{j} {'✓' if v else '✗'}" for j, v in enumerate(ok)]
    left, right = st.columns([1.5, 1])
    with left:
        st.plotly_chart(figures.board_grid(task, [tr.pred[i, j].numpy() for j in range(n)], titles,
                                           given=None if empty is not None else x.numpy(),
                                           probs=[tr.probs[i, j].float().numpy() for j in range(n)], ncols=6,
                                           height_per_row=150, title=f"{n} samples after {names[i]} supervision steps"),
                        key="gen_grid", config={"displayModeBar": False})
    with right:
        fig = figures.step_lines(names, {"valid samples": valid_rate, "mean confidence": conf}, i,
                                 "quality against depth", ytitle="share / probability",
                                 colors={"valid samples": figures.LPRM, "mean confidence": figures.GRAM}, height=300)
        fig.update_xaxes(title="supervision step")
        st.plotly_chart(fig, key="gen_quality", config={"displayModeBar": False})
        fig = figures.step_lines(names, {"distinct samples": distinct}, i, "diversity against depth",
                                 yrange=(0, n + 0.5), colors={"distinct samples": figures.VOTE}, height=240)
        fig.update_xaxes(title="supervision step")
        st.plotly_chart(fig, key="gen_diversity", config={"displayModeBar": False})


grid()
with st.expander("Animation (plays in the browser)", expanded=False, icon=":material/movie:"):
    k = min(n, 8)
    st.plotly_chart(figures.animated_grid(task, tr.probs[:, :k].float().numpy(), names, ncols=4,
                                          title=f"{k} samples refining over {R} supervision steps"),
                    key="gen_anim", config={"displayModeBar": False})
