"""Generation: many samples refining over recursion depth, as a grid per step, an animation, and quality
against depth. Unconditional tasks (MNIST digits, unconditional Sudoku) start from an all-blank input;
conditional tasks show N completions of one puzzle taking shape."""
from __future__ import annotations

import streamlit as st

from app import compute, state, stepfig, ui, views
from gram import analysis
from gram.tasks import get_task, task_names

sel = state.selection()
task = get_task(sel["task"])
ui.header("Generation refines over depth",
          "The same recursion, read as a generator: every sample starts from the same state and sharpens step by "
          "step. For unconditional tasks (binarized MNIST, complete Sudoku boards) the input is blank; for a puzzle, "
          "N different completions take shape at once.")
if not task.unconditional:
    # the unconditional tasks there is a checkpoint for (only those are built: a task can take a second to)
    uncond = [t for t in task_names() if state.discover(t) and get_task(t).unconditional]
    msg = "This task is conditional: below, N samples of one puzzle refining."
    if uncond:
        c1, c2 = st.columns([3, 1], vertical_alignment="center")
        c1.info(msg + f" Unconditional tasks: {', '.join(uncond)}.", icon=":material/info:")
        if c2.button(f"Switch to {uncond[0]}", icon=":material/swap_horiz:"):
            st.session_state["_pending"] = {"g_task": uncond[0]}
            st.rerun()
    else:
        st.caption(msg + " (Unconditional tasks, such as MNIST digits, are offered here once there is a checkpoint "
                         "of one.)")
ck, model, cfg, card = ui.load_model(sel, task, "generation")

MAX_DEPTH = views.PAGE["generation"]["max_depth"]
c1, c2, c3 = st.columns([2, 1, 1])
with c1:
    x = ui.puzzle_picker(task, sel["seed"], "gen", cfg.train.seed)
with c2:
    n = st.select_slider("Samples", [4, 8, 12, 16, 24, 32], key=ui.state_key(
        "gen", "n", views.PAGE["generation"]["n"], int, valid=lambda v: v in (4, 8, 12, 16, 24, 32)))
with c3:
    # up to 256: unconditional Sudoku keeps repairing its boards that long (its card is read at depth 128)
    n_sup = ui.knob(st.slider, "Depth", 1, MAX_DEPTH,
                    key=ui.state_key("gen", "depth", views.depth("generation", card, cfg), int,
                                     valid=lambda v: 1 <= v <= MAX_DEPTH),
                    help="Opens at the depth the checkpoint's card was evaluated at.")
if x is None:
    st.stop()

tr = None
view = dict(n=n, seed=sel["seed"], n_sup=n_sup, temperature=views.temperature(card, cfg), record="steps",
            latents="pooled")
notice = compute.slow_notice(ck, "trace", x, **view)
with ui.guard("the samples"), st.spinner(notice or "Sampling..."):
    tr = compute.trace(ck, x, **view)
if tr is None:
    st.stop()
R = len(tr.sup)
names = [str(int(s)) for s in tr.sup]
ok = analysis.valid_by_step(task, x, tr)  # (R, n)
ans = analysis.canonical(tr, task)  # answers, not their spellings: what distinct samples count
series = {"valid samples": ok.mean(1), "mean confidence": tr.probs.float().max(-1).values.mean((1, 2)).numpy(),
          "distinct samples (share)": analysis.distinct_per_step(ans) / n}
ui.stepping_chart(stepfig.generation(task, None if task.unconditional else x.numpy(), tr.pred.numpy(),
                                     tr.probs.float().numpy(), ok, series, names, ui.step_index("gen", R),
                                     title=f"{n} samples refining over {R} supervision steps"), "gen_view")
st.caption(f"Valid at the last step: {int(ok[-1].sum())} of {n}; distinct: {len(ans.pred[-1].unique(dim=0))} of {n}. "
           "Press play: each frame is one supervision step, drawn in your browser.")
ui.download_numbers(f"generation-{ck.mode}-n{n}", {
    "per step": {"step": names, "valid_share": series["valid samples"], "mean_confidence": series["mean confidence"],
                 "distinct_share": series["distinct samples (share)"]},
    "per sample": {"sample": range(n), "seed": tr.seeds, "valid_at_the_end": ok[-1],
                   "answer": [task.format_output(a) for a in ans.final]}},
    "gen_download", extra={"input": "blank" if task.unconditional else task.format_input(x), "mode": ck.mode,
                           "noise_scale": view["temperature"]})
