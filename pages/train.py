"""Train: configure, launch and watch a training run in a background thread (gram.train.Trainer)."""
from __future__ import annotations

import time

import streamlit as st

from app import figures, state, training, ui
from gram.tasks import task_names

sel = state.selection()
ui.header("Train a model",
          "Training maximises an evidence lower bound: a posterior that sees the answer steers the noise, and a "
          "KL term pulls the prior (what inference uses) towards it. Runs go on in the background while you "
          "explore other pages; each one is saved as a checkpoint that appears in the sidebar.")

SIZES = {"tiny (D=32, 1 layer)": ["D=32", "n_layers=1", "n_heads=4"],
         "small (D=64, 2 layers)": ["D=64", "n_layers=2", "n_heads=4"],
         "base (D=128, 2 layers)": ["D=128", "n_layers=2", "n_heads=4"]}
tasks = task_names()

st.markdown("##### New run")
c1, c2 = st.columns(2)
# task and mode outside the form: choosing them refills the form with that task's recipe
task = c1.selectbox("Task", tasks, index=tasks.index(sel["task"]) if sel["task"] in tasks else 0, key="tr_task")
mode = c2.selectbox("Mode", state.MODES, index=state.MODES.index(sel["mode"]), key="tr_mode",
                    format_func=lambda m: state.MODE_LABELS[m])
recipe = training.build_config(task, mode)
m, t = recipe.model, recipe.train
sizes = {f"the recipe's (D={m.D}, {m.n_layers} layers)": [], **SIZES}
with st.form(f"train_form_{task}", border=True):
    size = st.selectbox("Size", list(sizes), index=0, key=f"tr_size_{task}")
    c4, c5, c6, c7 = st.columns(4)
    beta = c4.number_input("beta (KL weight)", 0.0, 100.0, float(t.beta), step=0.05, key=f"tr_beta_{task}",
                           help="Too low and the posterior leaks the answer; too high and the guidance stays silent. "
                                "Filled in from the task's recipe.")
    steps = c5.number_input("Optimiser steps", 1, 200_000, 600, step=100, key=f"tr_steps_{task}",
                            help=f"The recipe trains {t.steps:,} steps; 600 show it learning within minutes.")
    batch = c6.number_input("Batch", 1, 4096, int(t.batch), step=16, key=f"tr_batch_{task}")
    lr = c7.number_input("Learning rate", 1e-6, 1e-1, float(t.lr), format="%.0e", key=f"tr_lr_{task}")
    extra = st.text_input("More settings (key=value, comma-separated)", "", key="tr_extra",
                          placeholder="e.g. n_sup=8, eval_every=100, K=2, T=2")
    submitted = st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:")

if submitted:
    # only what differs from the recipe is passed on, so this form and one-click training train the same model
    over = sizes[size] + [f"steps={int(steps)}", f"eval_every={max(1, min(250, int(steps) // 6))}"]
    over += [f"{k}={v}" for k, v, r in (("beta", beta, t.beta), ("batch", int(batch), t.batch), ("lr", lr, t.lr))
             if v != r]
    over += [s.strip() for s in extra.split(",") if s.strip()]
    try:
        cfg = training.build_config(task, mode, over)
        name = f"{task}-{mode}-{time.strftime('%m%d-%H%M%S')}"
        training.start(cfg, state.runs_root() / name, name)
        st.session_state["train_job"] = name
        st.toast(f"Training {name} started", icon=":material/rocket_launch:")
    except Exception as e:
        st.error(f"Cannot start this run: {e}", icon=":material/error:")

all_jobs = training.jobs()
if not all_jobs:
    st.info("No run yet. Start one above: the tiny size on nqueens7 shows curves moving within seconds; the "
            "small size starts to solve nqueens7 in about ten minutes on two CPU cores.", icon=":material/info:")
    st.stop()
names = [j.name for j in all_jobs]
if st.session_state.get("train_job") not in names:
    st.session_state["train_job"] = names[0]
name = st.selectbox("Run", names, key="train_job", help="Runs of this server, newest first.")


@st.fragment(run_every=1.0 if (training.get(name) and training.get(name).running) else None)
def live():
    job = training.get(name)
    snap = job.snapshot()
    frac = snap["step"] / max(1, snap["steps"])
    eta = snap["eta"]
    left = f", about {eta:.0f} s left" if eta is not None and job.running else ""
    st.progress(min(1.0, frac), text=f"{snap['status']}: step {snap['step']} of {snap['steps']}{left}")
    hist = snap["history"]
    steps_logs = [r for r in hist if "loss" in r]
    evals = [r for r in hist if "prior_accuracy" in r]
    m = st.columns(5)
    if steps_logs:
        last = steps_logs[-1]
        m[0].metric("loss", f"{last['loss']:.3f}")
        m[1].metric("true KL (nats/pos)", f"{last['kl']:.3f}" if "kl" in last else "n/a")
        m[2].metric("train acc (posterior)", f"{100 * last['train_accuracy']:.0f}%")
    if evals:
        m[3].metric("held-out acc (prior)", f"{100 * evals[-1]['prior_accuracy']:.0f}%")
        m[4].metric("held-out acc (posterior)", f"{100 * evals[-1].get('posterior_accuracy', 0):.0f}%")
    if snap["warning"]:
        st.warning(snap["warning"], icon=":material/warning:")
    if snap["error"]:
        st.error(f"Training stopped with an error: {snap['error']}", icon=":material/error:")
    ui.chart(figures.training_figure(hist), "train_curves")
    b1, b2, b3, b4 = st.columns(4)
    if job.running:
        if b1.button("Stop", icon=":material/stop:", key="train_stop", use_container_width=True):
            job.stop()
            st.rerun(scope="fragment")
        if b2.button("Save checkpoint now", icon=":material/save:", key="train_save", use_container_width=True):
            job.request_save()
            st.toast("Saving after the current step")
    else:
        more = b2.number_input("Resume to step", job.step + 1, 1_000_000, max(job.steps, job.step + 200), key="train_more",
                               label_visibility="collapsed")
        if b1.button("Resume", icon=":material/play_arrow:", key="train_resume", use_container_width=True,
                     disabled=snap["status"] == "error" and snap["step"] == 0):
            try:
                training.resume(name, int(more))
                st.rerun(scope="app")
            except Exception as e:
                st.error(f"Cannot resume: {e}")
        if b3.button("Open in Recursion", icon=":material/replay:", key="train_open", use_container_width=True):
            from pathlib import Path
            st.session_state["_pending"] = {"g_task": job.task, "g_mode": job.mode, "g_ckpt": Path(snap["out"]).name}
            st.switch_page(ui.PAGES["recursion"])
        b4.caption(f"checkpoint: `{snap['out']}`")
    # when a run ends, refresh the whole app once so the sidebar lists the new checkpoint
    seen = st.session_state.setdefault("_train_seen", {})
    if seen.get(name) != snap["status"]:
        was_running = seen.get(name) in ("starting", "running", "stopping")
        seen[name] = snap["status"]
        if was_running and not job.running:
            st.rerun(scope="app")


live()
