"""Selection: majority vote vs the latent process reward model (LPRM) on the same samples."""
from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from app import compute, figures, state, ui, views
from gram.tasks import get_task

sel = state.selection()
task = get_task(sel["task"])
ui.header("Majority vote or the value head?",
          "Width scaling draws N answers and keeps one. <b>Majority vote</b> keeps the most frequent answer; "
          "<b>LPRM</b> keeps the answer whose latent state the value head scores highest. Both see exactly the same "
          "samples here, on a fixed batch of held-out puzzles.")
ck, model, cfg, card = ui.load_model(sel, task, "the selection view")

c1, c2, c3 = st.columns(3)
with c1:
    n = st.select_slider("Samples N per puzzle", [1, 2, 4, 8, 16, 32, 64], key=ui.state_key(
        "sel", "n", views.PAGE["selection"]["n"], int, valid=lambda v: v in (1, 2, 4, 8, 16, 32, 64)))
with c2:
    p = ui.knob(st.select_slider, "Held-out puzzles", [8, 16, 32, 64, 128], key=ui.state_key(
        "sel", "p", views.PAGE["selection"]["p"], int, valid=lambda v: v in (8, 16, 32, 64, 128)))
with c3:
    n_sup = ui.knob(st.slider, "Depth", 1, 32, key=ui.state_key("sel", "depth", views.depth("selection", card, cfg), int,
                                                                valid=lambda v: 1 <= v <= 32),
                    help="Opens at the depth the checkpoint's card was evaluated at.")

b = None
view = dict(n_inputs=p, n=n, seed=sel["seed"], n_sup=n_sup)
notice = compute.slow_notice(ck, "batch", **view) or f"Sampling {n} answers for {p} puzzles (cached after the first time)..."
with ui.guard("the samples"), st.spinner(notice):
    b = compute.batch(ck, task.name, **view)
if b is None:
    st.stop()

ns = compute.widths(n)
cur = compute.selection_curves(b, ns)
iv, il = compute.picks(b)
valid = b["valid"]
P = len(valid)
vote_ok = valid[np.arange(P), iv]
lprm_ok = valid[np.arange(P), il]
m1, m2, m3, m4 = st.columns(4)
m1.metric(f"majority vote, N={n}", f"{100 * vote_ok.mean():.0f}%")
m2.metric(f"LPRM best-of-N, N={n}", f"{100 * lprm_ok.mean():.0f}%", delta=f"{100 * (lprm_ok.mean() - vote_ok.mean()):+.0f} pts")
m3.metric("one sample", f"{100 * valid[:, 0].mean():.0f}%")
m4.metric("any sample valid (oracle)", f"{100 * valid.any(1).mean():.0f}%")

l, r = st.columns([1.3, 1])
with l:
    fig = figures.curves(cur["n"], {"majority vote": cur["vote"], "LPRM best-of-N": cur["lprm"],
                                    "oracle (any valid)": cur["oracle"]},
                         f"accuracy against N on {P} held-out puzzles", "N samples (log scale)", "accuracy",
                         colors={"majority vote": figures.VOTE, "LPRM best-of-N": figures.LPRM,
                                 "oracle (any valid)": figures.BAD}, log_x=True, yrange=(0, 1.02),
                         dash={"oracle (any valid)": "dot"})
    ui.chart(fig, "sel_curve")
with r:
    ui.chart(figures.disagreement_bars(int((vote_ok & lprm_ok).sum()), int((vote_ok & ~lprm_ok).sum()),
                                       int((~vote_ok & lprm_ok).sum()), int((~vote_ok & ~lprm_ok).sum())), "sel_bars")

ui.download_numbers(f"selection-{ck.mode}-n{n}", {
    "per width": cur,
    "per puzzle": {"puzzle": range(P), "vote_pick": iv, "lprm_pick": il, "vote_pick_valid": vote_ok,
                   "lprm_pick_valid": lprm_ok, "valid_samples": valid.sum(1)}},
    "sel_download", extra={"mode": ck.mode, "samples": n, "depth": n_sup})

st.markdown("#### One puzzle up close")
differ = [i for i in range(P) if vote_ok[i] != lprm_ok[i] or
          not np.array_equal(b["answers"][i, iv[i]], b["answers"][i, il[i]])]
options = differ + [i for i in range(P) if i not in differ]
k = st.selectbox("Puzzle", options, key=ui.state_key("sel", "puzzle", options[0], int, valid=lambda v: 0 <= v < P),
                 format_func=lambda i: f"puzzle {i}" + ("  (the selectors disagree)" if i in differ else ""))
x = torch.as_tensor(b["inputs"][k])
samples, answers = torch.as_tensor(b["samples"][k]), torch.as_tensor(b["answers"][k])
values = b["values"][k]
ok = valid[k]
a1, a2, a3 = st.columns([1, 1, 1.3])
for col, name, idx, good in ((a1, "majority vote", iv[k], vote_ok[k]), (a2, "LPRM best-of-N", il[k], lprm_ok[k])):
    with col:
        votes = int((answers == answers[idx]).all(1).sum())
        st.markdown(f"**{name}** picks sample {idx} ({votes}/{n} votes, value {values[idx]:.2f}) "
                    f"<span class='gram-pill {'ok' if good else 'bad'}'>{'valid' if good else 'invalid'}</span>",
                    unsafe_allow_html=True)
        ui.chart(figures.board(task, samples[idx].numpy(), None, x.numpy(), height=320),
                 f"sel_board_{name.split()[0]}")
with a3:
    order = np.argsort(-values)
    ui.chart(figures.bars(order, values[order], [figures.LPRM if ok[j] else figures.BAD for j in order],
                          "value of each sample", "sample (sorted by value); green = valid", "LPRM value", (0, 1),
                          340, "sample %{x}: value %{y:.2f}<extra></extra>"), "sel_values")
if not differ:
    st.caption("On this batch the two selectors pick the same answer for every puzzle.")
else:
    st.caption(f"The selectors pick different answers on {len(differ)} of {P} puzzles.")
