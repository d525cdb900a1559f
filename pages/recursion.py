"""Recursion: step through one trajectory, transition by transition, beside a deterministic recursion (or the
posterior that sees the answer), with where h moves and where the learned prior explores."""
from __future__ import annotations

import numpy as np
import streamlit as st

from app import compute, state, stepfig, ui, views
from gram import analysis
from gram.cards import inference
from gram.tasks import get_task

sel = state.selection()
task = get_task(sel["task"])
ui.header("Recursion, step by step",
          "One puzzle, one trajectory. Press play or drag the figure's slider (it steps in your browser): watch the "
          "board's per-cell probabilities firm up, where the high-level latent <i>h</i> moves, where the learned "
          "prior's guidance explores (σ<sub>p</sub>), and the value and halting heads decide when the answer is good.")
ck, model, cfg, card = ui.load_model(sel, task, "the recursion view")
MAX_DEPTH = views.PAGE["recursion"]["max_depth"]

c1, c2, c3, c4 = st.columns([2.8, 1, 1, 1])
with c1:
    x = ui.puzzle_picker(task, sel["seed"], "rec", cfg.train.seed)
with c2:
    n_sup = st.slider("Depth (supervision steps)", 1, MAX_DEPTH, key=ui.state_key(
        "rec", "depth", views.depth("recursion", card, cfg), int, valid=lambda v: 1 <= v <= MAX_DEPTH),
        help="Opens at the depth the checkpoint's card was evaluated at.")
with c3:
    temp = ui.noise_scale("rec", views.temperature(card, cfg))
with c4:
    targets = compute.known_targets(task.name, cfg.train.seed, x) if x is not None else None
    can_q = model.posterior is not None and bool(targets)
    show_q = ui.knob(st.toggle, "Posterior q", key=ui.state_key("rec", "q", False, lambda v: v == "true"),
                     disabled=not can_q,
                     help="Beside the prior's trajectory, the same puzzle rolled out by the posterior q, which sees "
                          "a valid answer: where the answer had to steer, and by how much (KL(q || p))."
                     if can_q else "Needs a GRAM checkpoint and a puzzle whose answers are known.")
if x is None:
    st.stop()

tr = None
with ui.guard("the rollout"):
    tr = compute.trace(ck, x, n=1, seed=sel["seed"], n_sup=n_sup, temperature=temp)
if tr is None:
    st.stop()
if show_q and can_q:
    partner_name = "posterior q (sees the answer)"
    other = None
    with ui.guard("the posterior rollout"):
        other = compute.posterior_trace(ck, x, targets[0], seed=sel["seed"], n_sup=n_sup, temperature=temp)
else:
    partner_mode, other = ui.partner_trace(task, ck, x, n=1, seed=sel["seed"], n_sup=n_sup, temperature=temp)
    partner_name = state.MODE_LABELS.get(partner_mode, partner_mode)

labels = [f"{s}.{t}" for s, t in zip(tr.sup.tolist(), tr.trans.tolist())]
R = len(labels)
ok = task.is_correct(x[None].expand(R, -1), tr.pred[:, 0]).numpy()
dims = analysis.varying_dims(tr, 0, stepfig.LATENT_DIMS)
guide = analysis.guidance(tr)  # (R, L) per position: sigma, mu, eps
COLUMN = {"sigma": "sigma_p", "mu": "abs_mu_p", "eps": "abs_eps"}  # their names in the numbers' tables
sigma = guide.get("sigma")
rec = {"pred": tr.pred[:, 0].numpy(), "probs": tr.probs[:, 0].float().numpy(),
       "dh": analysis.h_change(tr, 0, model.h0.detach()), "sigma": sigma, "guide": analysis.guidance_per_step(tr),
       "h": tr.h[:, 0].float().numpy()[:, :, dims], "value": tr.value[:, 0].numpy(), "halt": tr.halt[:, 0].numpy(),
       "halt_at": inference(card, cfg.train.n_sup)["halt_at"], "act_stop": tr.act_stop(),
       "p_pred": None}
p_ok = kl = None
if other is not None:
    j = analysis.align_steps(tr, other)
    rec.update(p_pred=other.pred[j, 0].numpy(), p_probs=other.probs[j, 0].float().numpy(), p_halt=other.halt[j, 0].numpy())
    p_ok = task.is_correct(x[None].expand(R, -1), other.pred[j, 0]).numpy()
    kl = analysis.guidance(other).get("kl")  # (R', L) per position, where the posterior steered
    if kl is not None:  # the guidance panel shows where the answer had to steer instead of the prior's scale
        kl = kl[j]
        rec.update(sigma=kl, guide_kl=kl.sum(1))
verdict = lambda v: "✓ valid" if v else "✗ not valid yet"
mode_name = state.MODE_LABELS.get(ck.mode, ck.mode)
titles = {
    "board": lambda i: f"{mode_name.split(' (')[0]} · {verdict(ok[i])}",
    "partner": (lambda i: f"{partner_name.split(' (')[0]} · {verdict(p_ok[i])}") if other is not None
    else (lambda i: "the puzzle (no partner checkpoint)"),
    "dh": lambda i: f"where h moved (|Δh| {float(np.linalg.norm(rec['dh'][i])):.1f})",
    "sigma": (lambda i: f"where the answer steered (KL {float(kl[i].mean()):.3f})") if other is not None and kl is not None
    else (lambda i: f"where the prior explores (σ_p {float(sigma[i].mean()):.3f})") if sigma is not None
    else (lambda i: "no guidance noise in this mode"),
}
step0 = ui.step_index("rec", R)
ui.stepping_chart(stepfig.recursion(task, x.numpy(), rec, labels, step0, titles), "rec_view")
per_step = {"step": labels, "answer": [task.format_output(p) for p in tr.pred[:, 0]], "valid": ok,
            "lprm_value": rec["value"], "p_halt": rec["halt"], "h_change": np.linalg.norm(rec["dh"], axis=1),
            **{COLUMN[k]: v for k, v in rec["guide"].items()}}
L = rec["dh"].shape[1]
per_cell = {"step": np.repeat(labels, L), "position": np.tile(np.arange(L), R), "h_change": rec["dh"].ravel(),
            **{COLUMN[k]: v.ravel() for k, v in guide.items()}}
if other is not None:
    per_step.update(partner_valid=p_ok, partner_p_halt=rec["p_halt"])
if kl is not None:
    per_step["kl_total"] = rec["guide_kl"]
    per_cell["kl"] = kl.ravel()
ui.download_numbers(f"recursion-{ck.mode}-seed{sel['seed']}", {"per step": per_step, "per step and position": per_cell},
                    "rec_download", extra={"puzzle": task.format_input(x), "mode": ck.mode, "partner": partner_name,
                                           "seed": sel["seed"], "noise_scale": temp, "halt_at": rec["halt_at"]})
if other is None and not show_q:
    ui.need_partner(sel, partner_mode, "rec_partner_train")
with st.expander("What am I looking at?", expanded=False):
    st.markdown(
        "- **Boards**: colour is the decoder's probability of each cell's answer, read from *h* alone; glyphs are "
        "the argmax answer (amber = givens). The second board is the same puzzle under the partner: a deterministic "
        "recursion, or with the toggle on, the **posterior** q that sees a valid answer (its KL to the prior, in "
        "nats per position, is what training pays for that steering).\n"
        "- **Where h moved**: per position, how far *h* changed at this transition. **Where the prior explores**: "
        "σ<sub>p</sub> per position, the scale of the learned noise `eps ~ N(mu_p, sigma_p^2)` added to *h*: "
        "`h = f_H(h + l) + eps`. The noise-scale control multiplies the standard normal behind it.\n"
        "- **The guidance, per step**: averaged over positions, σ<sub>p</sub>, |μ<sub>p</sub>| (the size of the "
        "prior's mean, RMS over the latent dimensions) and |ε| (the size of the noise drawn, "
        "`eps = mu_p + sigma_p * scale * z`): |ε| follows the noise scale and equals |μ<sub>p</sub>| at 0, "
        "while σ<sub>p</sub> and |μ<sub>p</sub>| move with the trajectory the noise leads to. With the posterior "
        "toggle on, KL(q || p) summed over positions (dashed, right axis): how much the answer steered at "
        "each step.\n"
        f"- **h**: one row per position, the {len(dims)} latent dimensions that vary most over this run.\n"
        "- **Value / halting**: the LPRM head estimates how good the current answer is; P(halt) is the halting head's "
        f"belief that this step's answer is right; ACT halts once it passes {rec['halt_at']} at the end of a "
        "supervision step (dashed lines).\n"
        f"- Trajectory seed **{sel['seed']}**; the same seed always gives the same trajectory.",
        unsafe_allow_html=True)
