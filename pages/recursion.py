"""Recursion: step through one trajectory, transition by transition, GRAM and deterministic side by side."""
from __future__ import annotations


import numpy as np
import streamlit as st

from app import compute, figures, state, ui
from gram.rollout import HALT_AT
from gram.tasks import get_task

sel = state.selection()
task = get_task(sel["task"])
ui.header("Recursion, step by step",
          "One puzzle, one trajectory. Scrub through supervision steps and transitions: watch the board's "
          "per-cell probabilities firm up, the high-level latent <i>h</i> change, and the value and halting heads "
          "decide when the answer is good. On the right, a deterministic recursion on the same puzzle.")
ck, model, cfg, card = ui.load_model(sel, task, "the recursion view")

c1, c2, c3 = st.columns([2.2, 1, 1])
with c1:
    x = ui.puzzle_picker(task, sel["seed"], "rec")
with c2:
    n_sup = st.slider("Depth (supervision steps)", 1, 48, key=ui.state_key("rec", "depth", max(cfg.train.n_sup, 8), int,
                                                                           valid=lambda v: 1 <= v <= 48))
with c3:
    temp = ui.noise_scale("rec")
if x is None:
    st.stop()

tr = None
with ui.guard("the rollout"):
    tr = compute.trace(ck, x, n=1, seed=sel["seed"], n_sup=n_sup, temperature=temp)
if tr is None:
    st.stop()
partner_mode, other = ui.partner_trace(task, ck, x, n=1, seed=sel["seed"], n_sup=n_sup, temperature=temp)

labels = [f"{s}.{t}" for s, t in zip(tr.sup.tolist(), tr.trans.tolist())]
R = len(labels)
step_key = ui.step_key("rec", R)
known = compute.known_solutions(task.name, cfg.train.seed, x)
h0 = model.h0.float().numpy()


def verdict(pred) -> str:
    ok = bool(task.is_correct(x[None], pred[None])[0])
    return "<span class='gram-pill ok'>valid answer</span>" if ok else "<span class='gram-pill bad'>not valid yet</span>"


@ui.play_fragment("rec")
def scrubber():
    i = ui.play_scrubber("rec", step_key, labels, "Step (supervision step . transition)")
    s, t = int(tr.sup[i]), int(tr.trans[i])
    left, right = st.columns(2)
    with left:
        pred = tr.pred[i, 0]
        st.markdown(f"**{state.MODE_LABELS.get(ck.mode, ck.mode)}** · step {labels[i]} &nbsp; {verdict(pred)}",
                    unsafe_allow_html=True)
        st.plotly_chart(figures.board(task, pred.numpy(), tr.probs[i, 0].float().numpy(), x.numpy(), height=380),
                        key="rec_board", config={"displayModeBar": False})
    with right:
        if other is not None:
            T2 = int(other.trans.max())
            j = next((k for k, (a, b) in enumerate(zip(other.sup.tolist(), other.trans.tolist()))
                      if a == s and b == min(t, T2)), len(other.sup) - 1)
            opred = other.pred[j, 0]
            st.markdown(f"**{state.MODE_LABELS.get(partner_mode, partner_mode)}** · same puzzle, step "
                        f"{int(other.sup[j])}.{int(other.trans[j])} &nbsp; {verdict(opred)}", unsafe_allow_html=True)
            st.plotly_chart(figures.board(task, opred.numpy(), other.probs[j, 0].float().numpy(), x.numpy(), height=380),
                            key="rec_board_other", config={"displayModeBar": False})
        else:
            st.markdown("**Side by side**")
            ui.need_partner(sel, partner_mode, "rec_partner_train")
            if known:
                st.caption(f"This puzzle has {len(known)} valid completion{'s' if len(known) != 1 else ''}.")
    h = tr.h[i, 0].float().numpy()
    prev = tr.h[i - 1, 0].float().numpy() if i > 0 else np.broadcast_to(h0, h.shape)
    zmax = float(np.percentile(np.abs(tr.h[:, 0].float().numpy()), 99)) or 1.0
    l1, l2 = st.columns(2)
    with l1:
        st.plotly_chart(figures.latent_heatmap(h, f"high-level latent h at step {labels[i]}", zmax=zmax),
                        key="rec_h", config={"displayModeBar": False})
    with l2:
        d = h - prev
        since = "the previous transition" if i > 0 else "the initial state z0"
        st.plotly_chart(figures.latent_heatmap(d, f"change since {since} (|Δh| = {np.linalg.norm(d):.1f})", diff=True),
                        key="rec_dh", config={"displayModeBar": False})
    series = {"LPRM value": tr.value[:, 0].numpy(), "P(halt)": tr.halt[:, 0].numpy()}
    colors = {"LPRM value": figures.LPRM, "P(halt)": figures.GRAM}
    if other is not None:
        series["P(halt), " + partner_mode] = other.halt[:, 0].numpy()[: R]
        colors["P(halt), " + partner_mode] = figures.DET
    fig = figures.step_lines(labels, series, i, "value estimate and halting probability per step", colors=colors)
    fig.add_hline(y=HALT_AT, line=dict(color=figures.MUTED, width=1, dash="dash"), annotation_text="halt threshold",
                  annotation_position="bottom right")
    stop = tr.act_stop()
    if stop is not None:
        fig.add_vline(x=stop, line=dict(color=figures.GRAM, width=1, dash="dash"),
                      annotation_text=f"ACT halts (step {int(tr.sup[stop])})", annotation_position="top left")
    st.plotly_chart(fig, key="rec_lines", config={"displayModeBar": False})


scrubber()
with st.expander("What am I looking at?"):
    st.markdown(
        "- **Board**: colour is the decoder's probability of a queen in each cell, read from *h* alone; glyphs are "
        "the argmax answer (amber = given queens).\n"
        "- **h heat map**: one row per cell, one column per latent dimension. Noise enters *h* only: "
        "`h = f_H(h + l) + eps`, with `eps` drawn from the learned prior.\n"
        "- **Value / halting**: the LPRM head estimates how good the current answer is; P(halt) is the halting "
        f"head's belief that this step's answer is right, and ACT halts a trajectory once it passes {HALT_AT} at the end "
        "of a supervision step (the dashed vertical line). "
        "Both read *h* and never train the recursion.\n"
        f"- Trajectory seed **{sel['seed']}**; the same seed always gives the same trajectory.")
