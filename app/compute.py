"""Cached calls into the library for the pages. No model logic lives here: every number comes from
gram.rollout / gram.evaluate / gram.analysis / gram.tasks; this module only caches results per
(checkpoint, input, width, seed) and turns library errors into messages.

Caches: rollouts on disk (app.views: keyed by the checkpoint's content and every argument, so a view made
by the background warmer or before a restart opens at once), and in memory with st.cache_resource
(shared by all sessions, bounded). Every rollout is checked against the views' budget (views.within) before
it starts and runs under the server's one lock (views.LOCK).
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import streamlit as st
import torch

from app import views
from gram import analysis, evaluate
from gram import rollout as rollouts
from gram.budget import BudgetError
from gram.checkpoint import CheckpointError
from gram.rollout import Trace
from gram.tasks import get_task

MAX_WIDTH = 128  # trajectories a page rolls out at once


class UserError(ValueError):
    """Something the user can fix; pages show it with st.error."""


torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@contextlib.contextmanager
def readable(task):
    """A task's data that cannot be read (a data variable naming a missing folder) as a UserError saying so."""
    try:
        yield
    except OSError as e:
        raise UserError(f"Cannot read the data of task {task.name}: {e}. Where GRAM_SUDOKU_EXTREME or GRAM_MNIST_IDX "
                        "is set, it must name the folder that holds the task's files.") from None


def load(ckpt, task_name: str | None = None):
    """(model, cfg, card) of a Ckpt, or UserError with a clear message (wrong task, unreadable files). With
    task_name, the checkpoint's held-out split must also read: the page needs it."""
    if ckpt is None:
        raise UserError("No checkpoint selected.")
    try:
        model, cfg, card = views.load(ckpt.path)
    except CheckpointError as e:
        raise UserError(f"Cannot load checkpoint {ckpt.label}: {e}") from None
    except Exception as e:
        raise UserError(f"Cannot load checkpoint {ckpt.label} ({type(e).__name__}: {e})") from None
    if task_name and cfg.train.task != task_name:
        raise UserError(f"Checkpoint {ckpt.label} was trained for task {cfg.train.task!r}, not {task_name!r}. "
                        f"Pick {cfg.train.task!r} in the sidebar or another checkpoint.")
    if task_name:
        task = get_task(task_name)
        with readable(task):
            task.split("test", cfg.train.seed)
    warned = st.session_state.setdefault("_card_warned", set())
    problems = views.card_problems(ckpt.path)
    if problems and ckpt.path not in warned:  # once per session: the card is read on every rerun
        warned.add(ckpt.path)
        st.warning(f"The card.json of {ckpt.label} has fields of the wrong type, ignored: {'; '.join(problems)}.",
                   icon=":material/warning:")
    return model, cfg, card


def within(cost, hint: str = "Lower the width or the depth."):
    """views.within, as a UserError: the page shows the numbers instead of computing."""
    try:
        return views.within(cost, hint)
    except BudgetError as e:
        raise UserError(str(e)) from None


def check_width(cfg, n: int, n_sup: int, record: str = "transitions", latents: str = "full") -> None:
    if not 1 <= n <= MAX_WIDTH:
        raise UserError(f"Width {n} is out of range: choose 1 to {MAX_WIDTH} trajectories.")
    within(views.trace_cost(cfg, n, n_sup, record, latents))


@st.cache_resource(max_entries=24, show_spinner=False)
def _trace(key: str, x: tuple, n: int, seed: int, n_sup: int, temperature: float, record: str, latents: str,
           halt: bool) -> Trace:
    return views.trace(key.rsplit("@", 1)[0], torch.tensor(x, dtype=torch.long), n=n, seed=seed, n_sup=n_sup,
                       temperature=temperature, record=record, latents=latents, halt=halt)


@st.cache_resource(max_entries=48, show_spinner=False)
def _analysed(what: str, key: str, x: tuple, n: int, seed: int, n_sup: int, temperature: float, record: str,
              latents: str, halt: bool, k: int):
    # on disk beside its trace (the warmer makes the defaults'): a wide, deep view's fit or distances are slow
    tr = _trace(key, x, n, seed, n_sup, temperature, record, latents, halt)
    args = dict(n=n, seed=seed, n_sup=n_sup, temperature=temperature, record=record, latents=latents, halt=halt)
    path, xt = key.rsplit("@", 1)[0], torch.tensor(x, dtype=torch.long)
    return views.pca(path, xt, tr, k=k, **args) if what == "pca" else views.spread(path, xt, tr, **args)


def analysed(what: str, ckpt, x: torch.Tensor, *, k: int = 0, n: int = 1, seed: int = 0, n_sup: int = 8,
             temperature: float = 1.0, record: str = "transitions", latents: str = "full", halt: bool = False):
    """What a page reads off the view `trace` returns for the same arguments, kept with it: its PCA ('pca',
    k axes) or the spread of its trajectories ('spread')."""
    trace(ckpt, x, n=n, seed=seed, n_sup=n_sup, temperature=temperature, record=record, latents=latents, halt=halt)
    return _analysed(what, ckpt.key, tuple(int(v) for v in x.tolist()), int(n), int(seed), int(n_sup),
                     float(temperature), record, latents, bool(halt), int(k))


def pca(ckpt, x: torch.Tensor, *, k: int, **view) -> analysis.Projection:
    return analysed("pca", ckpt, x, k=k, **view)


def session_gone() -> bool:
    """Whether the session this script run serves has ended (its tab closed): its views need not finish."""
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx is not None and runtime.exists() and not runtime.get_instance().is_active_session(ctx.session_id)


def trace(ckpt, x: torch.Tensor, *, n: int = 1, seed: int = 0, n_sup: int = 8, temperature: float = 1.0,
          record: str = "transitions", latents: str = "full", halt: bool = False) -> Trace:
    """N trajectories on one input x (S,), seeds seed..seed+N-1 (so trajectory j is replayable alone)."""
    _, cfg, _ = load(ckpt)
    check_width(cfg, n, n_sup, record, latents)
    try:
        return _trace(ckpt.key, tuple(int(v) for v in x.tolist()), int(n), int(seed), int(n_sup), float(temperature),
                      record, latents, bool(halt))
    except torch.OutOfMemoryError:
        raise UserError(f"Out of memory rolling out {n} trajectories; lower the width.") from None
    except RuntimeError as e:
        raise UserError(f"The rollout failed: {e}") from None


@st.cache_resource(max_entries=8, show_spinner=False)
def _posterior(key: str, x: tuple, y: tuple, seed: int, n_sup: int, temperature: float) -> Trace:
    model, _, _ = views.load(key.rsplit("@", 1)[0])
    with views.LOCK:
        return rollouts.posterior_rollout(model, torch.tensor([x]), torch.tensor([y]), n_sup=n_sup, seed=seed,
                                          temperature=temperature, record="transitions", on_step=views.on_step)


def posterior_trace(ckpt, x: torch.Tensor, y: torch.Tensor, *, seed: int, n_sup: int, temperature: float = 1.0) -> Trace:
    """One trajectory steered by the posterior, which sees the answer y: trace.noise['kl'] per record."""
    _, cfg, _ = load(ckpt)
    check_width(cfg, 1, n_sup)
    return _posterior(ckpt.key, tuple(int(v) for v in x.tolist()), tuple(int(v) for v in y.tolist()), int(seed),
                      int(n_sup), float(temperature))


def slow_notice(ckpt, kind: str, x: torch.Tensor | None = None, **args) -> str | None:
    """A sentence saying how long a view will take, when it is not on disk yet and that is more than a few
    seconds. kind 'trace' (x and the arguments of `trace`) or 'batch' (those of `batch`, task excepted). The
    step time is measured only then, once per checkpoint; a view past the budget gets no notice (its call
    refuses it)."""
    try:
        view = views.trace_args(x, **args) if kind == "trace" else views.batch_args(**args)
        if views.on_disk(kind, ckpt.path, view):
            return None
        _, cfg, _ = load(ckpt)
        views.within(views.view_cost(kind, cfg, view))
        rows = args["n"] * args.get("n_inputs", 1)
        secs = views.estimate_seconds(ckpt.path, rows, args["n_sup"])
    except Exception:  # a notice is a courtesy: the call it announces reports any error
        return None
    return (f"About {secs:.0f} s to compute on this machine ({rows} trajectories x {args['n_sup']} steps); cached "
            "afterwards.") if secs > 3 else None


def branch(ckpt, x: torch.Tensor, *, seed: int, at_record: int, m: int, n_sup: int,
           temperature: float = 1.0) -> tuple[Trace, int]:
    """M continuations of trajectory `seed` from the end of the supervision step holding record `at_record`
    of its transition-level trace. Returns (trace of the M branches, the supervision step branched from)."""
    model, cfg, _ = load(ckpt)
    step = min(at_record // cfg.model.T + 1, n_sup - 1)  # that record's supervision step (1-based), completed
    if step < 1 or m < 1:
        raise UserError("Pick a step before the last one to branch from.")
    check_width(cfg, m, n_sup)
    with views.LOCK, torch.inference_mode():
        return rollouts.branch(model, x, seed, step, m, n_sup=n_sup, temperature=temperature,
                               record="transitions", on_step=views.on_step), step


# --- answers ---------------------------------------------------------------------------------
def answer_labels(task, x: torch.Tensor, answers: torch.Tensor, known: list[str] | None = None) -> tuple[list[str], list[bool]]:
    """Name each answer (B, S): 'solution k' for a valid one (numbered in order of first appearance, or by the
    list of known solutions), 'invalid' otherwise. Returns (labels, valid)."""
    valid = task.is_correct(x[None].expand(len(answers), -1), answers).tolist()
    order = {s: i for i, s in enumerate(known or [])}
    labels = []
    for a, v in zip(answers, valid):
        if not v:
            labels.append("invalid")
            continue
        s = task.format_output(a)
        if s not in order:
            order[s] = len(order)
        labels.append(f"solution {order[s] + 1}")
    return labels, valid


def known_solutions(task_name: str, seed: int, x: torch.Tensor) -> list[str] | None:
    """Every valid answer of x when x is one of the task's inputs (test or train split), else None. None for an
    unconditional task too: its split's boards are a sample of the blank input's answers, not all of them."""
    t = None if get_task(task_name).unconditional else known_targets(task_name, seed, x)
    return None if t is None else [get_task(task_name).format_output(y) for y in t]


def known_targets(task_name: str, seed: int, x: torch.Tensor) -> list[torch.Tensor] | None:
    """The targets x has in the task's data (for the blank input of an unconditional task: its split's boards)."""
    return _known(task_name, seed, tuple(int(v) for v in x.tolist()))


@st.cache_resource(max_entries=64, show_spinner=False)
def _known(task_name: str, seed: int, x: tuple) -> list[torch.Tensor] | None:
    row = torch.tensor(x)
    for name in ("test", "train"):  # the held-out split first: a small file, where most puzzles shown live
        s = _split(task_name, seed, name)
        if s.inputs.shape[1:] != row.shape:
            return None
        found = torch.nonzero((s.inputs == row).all(1)).flatten()
        if len(found):
            return list(s.targets[s.owner == found[0]])
    return None


@st.cache_resource(max_entries=16, show_spinner=False)
def _split(task_name: str, seed: int, name: str):
    return get_task(task_name).split(name, seed)


def batch(ckpt, task_name: str, *, n_inputs: int, n: int, seed: int, n_sup: int) -> dict:
    """N samples for each of n_inputs held-out inputs (a fixed, seeded subset of the test split)."""
    _, cfg, _ = load(ckpt, task_name)
    within(views.batch_cost(cfg, n_inputs, n, n_sup), "Lower the samples, the puzzles or the depth.")
    return _batch(ckpt.key, int(n_inputs), int(n), int(seed), int(n_sup))


@st.cache_resource(max_entries=16, show_spinner=False)
def _batch(key: str, n_inputs: int, n: int, seed: int, n_sup: int) -> dict:
    return views.batch(key.rsplit("@", 1)[0], n_inputs=n_inputs, n=n, seed=seed, n_sup=n_sup)


def widths(n_max: int) -> list[int]:
    ws = [2 ** i for i in range(int(math.log2(max(1, n_max))) + 1)]
    return ws if ws[-1] == n_max else ws + [n_max]


def _sample_set(b: dict) -> evaluate.SampleSet:
    """The SampleSet a batch view was read from (app.views.batch)."""
    t = {k: torch.as_tensor(b[k]) for k in ("answers", "valid", "values", "n_targets")}
    return evaluate.SampleSet(t["answers"], t["valid"], t["values"], t["n_targets"])


def selection_curves(b: dict, ns: list[int]) -> dict:
    """Vote / LPRM / pass@n accuracy (and coverage) when only the first n samples of a batch exist."""
    return evaluate.curves(_sample_set(b), ns)


def picks(b: dict) -> tuple[np.ndarray, np.ndarray]:
    """The index of the answer the vote and the LPRM pick for each puzzle of a batch."""
    p = evaluate.picks(_sample_set(b))
    return p["vote"].numpy(), p["lprm"].numpy()


def coverage_curve(task, x: torch.Tensor, answers: torch.Tensor, ns: list[int]) -> list[int]:
    """Distinct valid answers among the first n of `answers` (B, S) to the one input x, for each n."""
    valid = task.is_correct(x[None].expand(len(answers), -1), answers)
    s = evaluate.SampleSet(answers[None], valid[None])
    return [int(evaluate.found(s.first(min(n, s.N)))[0]) for n in ns]
