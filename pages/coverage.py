"""Coverage: how many of a puzzle's valid answers N samples find, GRAM against deterministic recursion."""
from __future__ import annotations

from collections import Counter

import streamlit as st

from app import compute, figures, state, ui, views
from gram import analysis
from gram.tasks import get_task

sel = state.selection()
task = get_task(sel["task"])
# boards a gallery shows: a Sudoku board draws 81 digits, so fewer of them keep the gallery as quick to draw
GALLERY = 12 if task.board == "sudoku" else 24
ui.header("Coverage of the answer space",
          "A multi-solution puzzle has several valid completions. Sample N trajectories and count the distinct valid "
          "answers they reach. A deterministic recursion gives the same answer every time; GRAM's learned noise "
          "lets width buy coverage.")
ck, model, cfg, card = ui.load_model(sel, task, "the coverage view")

c1, c2, c3 = st.columns([2, 1, 1])
with c1:
    x = ui.puzzle_picker(task, sel["seed"], "cov", cfg.train.seed)
with c2:
    n = st.select_slider("Samples N", [1, 2, 4, 8, 16, 32, 64, 128], key=ui.state_key(
        "cov", "n", views.PAGE["coverage"]["n"], int, valid=lambda v: v in (1, 2, 4, 8, 16, 32, 64, 128)))
with c3:
    temp = ui.noise_scale("cov", views.temperature(card, cfg))
if x is None:
    st.stop()

n_sup = views.depth("coverage", card, cfg)
st.caption(f"Depth {n_sup} supervision steps: the depth this checkpoint's card was evaluated at.")
tr = None
view = dict(n=n, seed=sel["seed"], n_sup=n_sup, temperature=temp, record="steps", latents="pooled")
notice = compute.slow_notice(ck, "trace", x, **view)
with ui.guard("the samples"), st.spinner(notice or "Sampling..."):
    tr = compute.trace(ck, x, **view)
if tr is None:
    st.stop()
partner_mode, other = ui.partner_trace(task, ck, x, **view)

known = compute.known_solutions(task.name, cfg.train.seed, x)
ns = compute.widths(n)
ans = analysis.canonical(tr, task)  # answers, not their spellings (a colouring's colours renamed): what coverage counts
final = ans.final
commit = analysis.commit_steps(ans)  # the supervision step each sample stops changing its answer at
cov = compute.coverage_curve(task, x, final, ns)
labels, valid = compute.answer_labels(task, x, final, known)
texts = [task.format_output(a) for a in final]  # once: an MNIST answer is 784 characters
found = Counter(t for t, v in zip(texts, valid) if v)

m1, m2, m3 = st.columns(3)
m1.metric("valid completions of this puzzle", len(known) if known else "unknown",
          help=None if known else "Every valid board: too many to enumerate." if task.unconditional else
          "The puzzle is not in the task's data, so the full answer set is not enumerated.")
m2.metric(f"distinct valid answers in {n} samples", len(found),
          delta=f"{100 * len(found) / len(known):.0f}% coverage" if known else None, delta_color="off")
m3.metric("valid samples", f"{sum(valid)}/{n}")

series = {f"{ck.mode}": cov}
colors = {ck.mode: figures.GRAM if ck.mode == "gram" else figures.DET}
if other is not None:
    series[partner_mode] = compute.coverage_curve(task, x, task.canonical(other.final), ns)
    colors[partner_mode] = figures.DET if partner_mode == "deterministic" else figures.GRAM
fig = figures.curves(ns, series, "distinct valid answers found against N", "N samples (log scale)", "answers found",
                     colors=colors, log_x=True, yrange=(0, len(known) + 0.5) if known else None,
                     target=(len(known), f"all {len(known)}") if known else None)
l, r = st.columns([1.2, 1])
with l:
    ui.chart(fig, "cov_curve")
    if other is None:
        ui.need_partner(sel, partner_mode, "cov_partner_train")
    steps = [str(int(k)) for k in tr.sup]
    ui.chart(figures.commit_strip(commit, labels, steps, "when each sample settles on its answer",
                                  height=min(600, 140 + 24 * len(set(labels)))), "cov_commit")
    ui.download_numbers(f"coverage-{ck.mode}-n{n}", {
        "per width": {"n": ns, **{f"distinct_valid_{k}": v for k, v in series.items()}},
        "per sample": {"sample": range(n), "seed": tr.seeds, "label": labels, "valid": valid,
                       "commit_step": [steps[c] for c in commit], "answer": texts}},
        "cov_download", extra={"puzzle": task.format_input(x), "mode": ck.mode, "depth": n_sup, "noise_scale": temp,
                               "valid_answers_of_the_puzzle": len(known) if known else None})
with r:
    if found:
        order = sorted(found, key=lambda s: -found[s])
        first = {t: j for j, t in reversed(list(enumerate(texts)))}  # each answer's first sample
        toks = [final[first[s]] for s in order]
        names = [f"{labels[first[s]]} · ×{found[s]}" for s in order]
        ui.chart(figures.board_grid(task, [t.numpy() for t in toks[:GALLERY]], names[:GALLERY], given=x.numpy(), ncols=4,
                                    height_per_row=170, title="the answers found (× how often)"), "cov_gallery")
    else:
        st.warning(f"None of the {n} samples is a valid answer at depth {n_sup}: this checkpoint has not learned to "
                   "solve this puzzle. " + ("More samples or another puzzle may do better." if ck.source == "shipped"
                                            else "Train longer, or pick a shipped checkpoint."),
                   icon=":material/warning:")
        targets = compute.known_targets(task.name, cfg.train.seed, x) if known else None
        if targets:
            ui.chart(figures.board_grid(task, [t.numpy() for t in targets[:GALLERY]], None, given=x.numpy(), ncols=4,
                                        height_per_row=170, title=f"the {len(targets)} answers to find"), "cov_gallery")
if known:
    targets = compute.known_targets(task.name, cfg.train.seed, x)
    missed = [t for s, t in zip(known, targets) if s not in found]
    # drawn when asked for: a figure in a closed expander is drawn all the same, and a gallery is the page's slowest
    if missed and st.toggle(f"Show the {len(missed)} valid completion{'s' if len(missed) != 1 else ''} no sample reached",
                            key="cov_show_missed"):
        ui.chart(figures.board_grid(task, [t.numpy() for t in missed[:GALLERY]], None, given=x.numpy(), ncols=6,
                                    height_per_row=150), "cov_missed")
