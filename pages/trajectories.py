"""Trajectories: N sampled latent trajectories on one puzzle, projected by PCA, coloured by their answer."""
from __future__ import annotations

from collections import Counter

import streamlit as st
import torch

from app import compute, figures, state, stepfig, ui, views
from gram import analysis
from gram.tasks import get_task

sel = state.selection()
task = get_task(sel["task"])
ui.header("Trajectories diverge",
          "Sample N trajectories from the prior on the same puzzle. Each line is one trajectory's high-level state "
          "<i>h</i> over all transitions, projected on principal components fitted once on every state of the run "
          "(fixed axes). Colour = the answer it ends on. Pick a trajectory to see its board"
          + (", or branch new continuations from any step." if ui.advanced() else "."))
ck, model, cfg, card = ui.load_model(sel, task, "the trajectory view")

MAX_DEPTH = views.PAGE["trajectories"]["max_depth"]
c1, c2, c3, c4 = st.columns([2, 1.2, 1, 0.8])
with c1:
    x = ui.puzzle_picker(task, sel["seed"], "traj", cfg.train.seed)
with c2:
    n = st.slider("Samples N", 1, compute.MAX_WIDTH, key=ui.state_key("traj", "n", views.PAGE["trajectories"]["n"], int,
                                                                      valid=lambda v: 1 <= v <= compute.MAX_WIDTH),
                  help="The stochastic knob: more samples, more of the answer space explored.")
    temp = ui.noise_scale("traj", views.temperature(card, cfg))
with c3:
    n_sup = ui.knob(st.slider, "Depth", 1, MAX_DEPTH,
                    key=ui.state_key("traj", "depth", views.depth("trajectories", card, cfg), int,
                                     valid=lambda v: 1 <= v <= MAX_DEPTH),
                    help="Opens at the depth the checkpoint's card was evaluated at (at most 32 here).")
with c4:
    dims = ui.knob(st.radio, "Projection", [2, 3], format_func=lambda d: f"{d}-D", key=ui.state_key(
        "traj", "dims", 2, int, valid=lambda v: v in (2, 3)))
if x is None:
    st.stop()

tr = None
view = dict(n=n, seed=sel["seed"], n_sup=n_sup, temperature=temp)
notice = compute.slow_notice(ck, "trace", x, **view)
with ui.guard("the rollout"), st.spinner(notice or "Rolling out..."):
    tr = compute.trace(ck, x, **view)
if tr is None:
    st.stop()
proj = compute.pca(ck, x, k=views.PAGE["trajectories"]["pca"], **view)
known = compute.known_solutions(task.name, cfg.train.seed, x)
ans = analysis.canonical(tr, task)  # answers, not their spellings: what labels, counts and commitment read
labels, valid = compute.answer_labels(task, x, ans.final, known)
step_names = [f"{s}.{t}" for s, t in zip(tr.sup.tolist(), tr.trans.tolist())]
R = len(step_names)

counts = Counter(labels)
n_valid = sum(valid)
distinct_valid = len([k for k in counts if k != "invalid"])
m1, m2, m3, m4 = st.columns(4)
m1.metric("trajectories", n)
m2.metric("valid answers", f"{n_valid}/{n}")
m3.metric("distinct valid answers", distinct_valid if not known else f"{distinct_valid} of {len(known)}")
m4.metric("variance shown by PC1+PC2", f"{100 * float(proj.explained[:2].sum()):.1f}%")

pick_key = ui.state_key("traj", "pick", 0, int, valid=lambda v: 0 <= v < compute.MAX_WIDTH)
if st.session_state[pick_key] >= n:
    st.session_state[pick_key] = 0
# a click on a trajectory's marker picks it (a server round trip, as it changes which board is drawn)
ev = st.session_state.get("traj_view")
try:
    pts = ev["selection"]["points"] if ev else []
except (KeyError, TypeError):
    pts = []
if pts and "customdata" in pts[0]:
    sig = str(pts[0])
    if st.session_state.get("_traj_last_click") != sig:
        st.session_state["_traj_last_click"] = sig
        cd = pts[0]["customdata"]
        j = int(cd[0] if isinstance(cd, (list, tuple)) else cd)
        if 0 <= j < n:
            st.session_state[pick_key] = j
j = st.number_input(f"Trajectory shown on the board (0-{n - 1}; or click its marker)", 0, n - 1, key=pick_key)
fig = stepfig.trajectories(task, x.numpy(), proj.coords, proj.explained, labels, tr.pred[:, j].numpy(),
                           tr.probs[:, j].float().numpy(), j, step_names, ui.step_index("traj", R), dims=dims)
if dims == 2:
    ui.stepping_chart(fig, "traj_view", clicks=True)
else:
    ui.stepping_chart(fig, "traj_view3")

rms, distinct = compute.analysed("spread", ck, x, **view), analysis.distinct_per_step(ans)
ui.chart(figures.step_lines(step_names, [
    {"title": "how far apart the trajectories are", "series": {"spread of h across samples": rms}, "yrange": None,
     "colors": {"spread of h across samples": figures.GRAM}},
    {"title": "distinct decoded answers among the N samples", "series": {"distinct answers": distinct},
     "yrange": (0, n + 0.5), "colors": {"distinct answers": figures.VOTE}}], height=260), "traj_curves")

st.markdown("#### When and where do trajectories decide?")
st.caption("Each trajectory keeps changing its answer for a while, then commits. Left: the step at which each "
           "one's answer stops changing. Right: per cell and step, the share of trajectories that disagree with the "
           "majority there: the cells that decide between solutions. Below: how the trajectories regroup over depth.")
commit = analysis.commit_steps(ans)
d1, d2 = st.columns(2)
with d1:
    ui.chart(figures.commit_strip(commit, labels, step_names, "when each trajectory commits"), "traj_commit")
with d2:
    split = analysis.disagreement(ans)  # (R, S)
    ui.chart(figures.disagreement_map(split, step_names, "where they disagree"), "traj_disagree")
ends = tr.ends()
cols_at = sorted({ends[min(len(ends) - 1, round(q * (len(ends) - 1) / 5))] for q in range(6)})
name_of = {}
for a in [tuple(r) for k in cols_at for r in ans.pred[k].tolist()]:
    if a not in name_of:
        lab, ok = compute.answer_labels(task, x, torch.tensor([a]), known)
        name_of[a] = lab[0] if ok[0] else "not valid yet"
ui.chart(figures.flow_bands(analysis.answer_flow(ans, cols_at, name_of.get), step_names,
                             "answers over depth: which trajectories share one, step by step"), "traj_flow")

S = split.shape[1]
ui.download_numbers(f"trajectories-seed{sel['seed']}", {
    "per step": {"step": step_names, "spread_of_h": rms, "distinct_answers": distinct,
                 "mean_disagreement": split.mean(1)},
    "per trajectory": {"trajectory": range(n), "seed": tr.seeds, "final_answer": labels, "valid": valid,
                       "answer": [task.format_output(a) for a in ans.final],
                       "commit_step": [step_names[c] for c in commit]},
    "per step and trajectory": {"step": [s for s in step_names for _ in range(n)], "trajectory": list(range(n)) * R,
                                **{f"pc{k + 1}": proj.coords[..., k].ravel() for k in range(proj.coords.shape[-1])}},
    "per step and cell": {"step": [s for s in step_names for _ in range(S)], "cell": list(range(S)) * R,
                          "disagreement": split.ravel()}},
    "traj_download", extra={"puzzle": task.format_input(x), "mode": ck.mode, "noise_scale": temp,
                            "explained_variance": proj.explained})

if not ui.advanced():  # branching is for exploring further, not for a lesson's one view
    st.stop()
st.markdown("#### Branch from a step")
st.caption("Replay one trajectory up to a supervision step, then let M fresh noise streams continue from there: "
           "how committed is it to its answer at that point?")
b1, b2, b3 = st.columns([1, 1, 1], vertical_alignment="bottom")
with b1:
    m = st.slider("Continuations M", 2, 64, key=ui.state_key("traj", "m", 16, int, valid=lambda v: 2 <= v <= 64))
with b2:
    last = max(2, n_sup - 1)  # a slider needs two values; compute.branch refuses a step past the last
    at = st.slider("Branch after supervision step", 1, last,
                   key=ui.state_key("traj", "at", max(1, n_sup // 4), int, valid=lambda v: 1 <= v <= last),
                   disabled=n_sup < 2)
with b3:
    go_branch = st.button("Branch", icon=":material/call_split:", type="primary", disabled=n_sup < 2)
branch_key = (ck.key, tuple(x.tolist()), sel["seed"], n_sup, temp, n)
if go_branch:
    with ui.guard("the branches"), st.spinner("Rolling out continuations..."):
        j = int(st.session_state[pick_key])
        T = cfg.model.T
        btr, from_step = compute.branch(ck, x, seed=tr.seeds[j], at_record=at * T - 1, m=m, n_sup=n_sup,
                                        temperature=temp)
        st.session_state["traj_branch"] = (branch_key, (j, from_step, btr))
# a branch result belongs to the view it was made in: another checkpoint, puzzle, seed, depth or noise hides it
res = st.session_state.get("traj_branch")
if res is not None and res[0] == branch_key:
    j, from_step, btr = res[1]
    bfinal = task.canonical(btr.final)
    blabels, _ = compute.answer_labels(task, x, bfinal, known or None)
    # keep the names of the main run's answers where they coincide
    by_answer = {task.format_output(ans.final[k]): labels[k] for k in range(n)}
    blabels = [by_answer.get(task.format_output(bfinal[k]), bl if bl == "invalid" else bl + " (new)")
               for k, bl in enumerate(blabels)]
    cnt = Counter(blabels)
    names = sorted(cnt, key=lambda k: (k == "invalid", -cnt[k]))
    ui.chart(figures.bars(names, [cnt[k] for k in names], [figures.label_color(k.split(" (")[0]) for k in names],
                          f"where {len(blabels)} continuations of trajectory {j} from step {from_step} end "
                          f"(it ended on {labels[j]})", ytitle="continuations"), "traj_branch_fig")
