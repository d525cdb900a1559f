"""The rollouts behind the app's views, cached on disk, and the default view of every page.

No Streamlit here: `python -m app.warm` (which the server also starts in the background) calls the same functions
as the pages, so a view the warmer made is the view a page opens. A cached rollout is keyed by a digest of its
checkpoint's files (weights, config) and every argument; a re-saved checkpoint gets new entries, and an entry
that does not match or does not read is recomputed (gram.tasks.cache). Files live under
$GRAM_CACHE/views (default ~/.cache/gram/views).

Every rollout of the server runs under LOCK, one at a time, and a view is refused before it starts when it
would pass VIEW_MEMORY or VIEW_WORK (gram.budget), so one session's request holds the others up for minutes
at most: an uploaded config with T = 100000 is a message, not a page that computes forever. A rollout
started inside `abandon_when(gone)` stops after the supervision step at which gone() turns true: the app stops
the views of a session that has ended.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from gram import analysis, budget
from gram.cards import check_card, inference
from gram.checkpoint import load_checkpoint
from gram.evaluate import draw
from gram.rollout import Trace, rollout
from gram.tasks import cache, get_task

ASSETS = Path(__file__).resolve().parent.parent / "assets"
# what each page shows before it is touched; depth and noise scale come from the checkpoint's card
PAGE = {
    "recursion": {"n": 1, "record": "transitions", "latents": "full", "max_depth": 64},
    "trajectories": {"n": 32, "record": "transitions", "latents": "full", "max_depth": 32, "pca": 3, "spread": True},
    "coverage": {"n": 64, "record": "steps", "latents": "pooled", "max_depth": 64},
    "generation": {"n": 12, "record": "steps", "latents": "pooled", "max_depth": 256},
    "tour": {"n": 16, "record": "transitions", "latents": "pooled", "max_depth": 32, "pca": 2},
    "selection": {"n": 16, "p": 16, "max_depth": 32},
}
# one rollout at a time in the server (every session is a thread of one process): two would only share the
# same two cores, and a long one would slow every other session
LOCK = threading.Lock()
VIEW_MEMORY = 2e9  # bytes one view may take: up to 24 stay cached in memory (app.compute)
# operations one view may take: ~2-4 min of two CPU cores, the longest it holds LOCK. Every page's widest
# setting fits on the shipped checkpoints but Selection's 64 samples x 128 puzzles x depth 32 (1e13-9e13)
VIEW_WORK = 5e12
BATCH_CHUNK = 512  # rows a batch rolls out at once: its working memory fits VIEW_MEMORY on every shipped model
# in a batch view's key: a file written by an older way of computing the view is recomputed, not read. 2: drawn
# by gram.evaluate.draw, validity judged on the canonical answers (as `gram eval` judges them)
BATCH_VERSION = 2
PCA_VERSION = 1  # in a PCA's key, as BATCH_VERSION: a fit made another way (gram.analysis.pca) is refitted
SPREAD_VERSION = 1  # the same for a view's spread (gram.analysis.per_step_spread)
_WATCH = threading.local()  # per server thread (one per session's script run): when to abandon its rollouts


class Abandoned(RuntimeError):
    """A rollout stopped because nobody waits for its view any more (nothing of it is cached)."""


@contextlib.contextmanager
def abandon_when(gone):
    """Rollouts this thread starts inside the block stop, raising Abandoned, at the first supervision step
    at which gone() is true."""
    _WATCH.gone = gone
    try:
        yield
    finally:
        _WATCH.gone = None


def on_step(_n: int) -> None:
    """The on_step of every rollout a view makes (gram.rollout): raises Abandoned once this thread's gone()."""
    gone = getattr(_WATCH, "gone", None)
    if gone is not None and gone():
        raise Abandoned("the view's session has ended")


def presets(task: str) -> list[dict]:
    try:
        return json.loads((ASSETS / "presets.json").read_text()).get(task, [])
    except (OSError, ValueError, AttributeError):
        return []


@lru_cache(maxsize=64)
def _digest(path: str, stamp: tuple) -> str:
    h = hashlib.sha256()
    for name in ("model.safetensors", "config.json"):
        h.update((Path(path) / name).read_bytes())
    return h.hexdigest()[:20]


def digest(path: str) -> str:
    """Content digest of a checkpoint's weights and config (recomputed when either file changes)."""
    stamp = tuple((Path(path) / n).stat().st_mtime_ns for n in ("model.safetensors", "config.json"))
    return _digest(str(path), stamp)


@lru_cache(maxsize=8)
def _load(path: str, dig: str):
    model, cfg, card = load_checkpoint(path)
    return model, cfg, *check_card(card)


def load(path: str):
    """(model, cfg, card) of the checkpoint at path, the card without its badly typed fields (card_problems);
    raises CheckpointError."""
    return _load(str(path), digest(path))[:3]


def card_problems(path: str) -> list[str]:
    """What gram.cards.check_card dropped from the checkpoint's card."""
    return _load(str(path), digest(path))[3]


def within(cost: budget.Cost, hint: str = "Lower the width or the depth.") -> budget.Cost:
    """The cost, or gram.budget.BudgetError when a view would pass VIEW_MEMORY (or this machine's share) or
    VIEW_WORK."""
    return budget.check(cost, min(VIEW_MEMORY, budget.memory_ceiling()), VIEW_WORK, hint)


def trace_cost(cfg, n: int, n_sup: int, record: str = "transitions", latents: str = "full") -> budget.Cost:
    return budget.rollout_cost(cfg.model, n, n_sup, record=record, latents=latents, what="This view")


def batch_cost(cfg, n_inputs: int, n: int, n_sup: int) -> budget.Cost:
    return budget.sampling_cost(cfg.model, n_inputs, n, n_sup, "This view", chunk=BATCH_CHUNK)


def view_cost(kind: str, cfg, view: dict) -> budget.Cost:
    """The cost of a view given as its cache arguments (trace_args / batch_args)."""
    if kind == "trace":
        return trace_cost(cfg, view["n"], view["n_sup"], view["record"], view["latents"])
    return batch_cost(cfg, view["n_inputs"], view["n"], view["n_sup"])


def depth(page: str, card: dict, cfg) -> int:
    """A page's default depth: the one the card was evaluated at, within the page's range."""
    return max(1, min(inference(card, cfg.train.n_sup)["n_sup"], PAGE[page]["max_depth"]))


def temperature(card: dict, cfg) -> float:
    return float(min(2.0, inference(card, cfg.train.n_sup)["temperature"]))


def default_input(task, split_seed: int) -> torch.Tensor:
    """The puzzle a page opens on: the task's first preset, else the first held-out input of the checkpoint's
    own split; the blank input of an unconditional task."""
    if task.unconditional:
        return task.empty_input()
    pres = presets(task.name)
    if pres:
        return task.parse(pres[0]["puzzle"])
    return task.split("test", split_seed).inputs[0]


# --- the disk cache: one key builder for the cache and for `on_disk` ---------------------------------------
def trace_args(x: torch.Tensor, *, n: int, seed: int, n_sup: int, temperature: float = 1.0,
               record: str = "transitions", latents: str = "full", halt: bool = False) -> dict:
    """The arguments of a trace view, as its cache key holds them."""
    return {"x": [int(v) for v in x.tolist()], "n": int(n), "seed": int(seed), "n_sup": int(n_sup),
            "temperature": float(temperature), "record": record, "latents": latents, "halt": bool(halt)}


def pca_args(x: torch.Tensor, k: int, **trace_kwargs) -> dict:
    """The arguments of a view's PCA, as its cache key holds them: its trace's, k, and how the fit is made."""
    return {**trace_args(x, **trace_kwargs), "k": int(k), "version": PCA_VERSION}


def spread_args(x: torch.Tensor, **trace_kwargs) -> dict:
    """The arguments of a view's spread, as its cache key holds them: its trace's, and how it is computed."""
    return {**trace_args(x, **trace_kwargs), "version": SPREAD_VERSION}


def batch_args(*, n_inputs: int, n: int, seed: int, n_sup: int) -> dict:
    """The arguments of a batch view, as its cache key holds them."""
    return {"n_inputs": int(n_inputs), "n": int(n), "seed": int(seed), "n_sup": int(n_sup), "version": BATCH_VERSION}


def entry(kind: str, path: str, args: dict) -> tuple[str, Path]:
    """(key, file) of a view on disk: `kind` is 'trace', 'pca', 'spread' or 'batch', args from its *_args."""
    key = json.dumps({"kind": kind, "checkpoint": digest(path), **args}, sort_keys=True)
    return key, cache.cache_root() / "views" / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.safetensors"


def on_disk(kind: str, path: str, args: dict) -> bool:
    """Whether that view is cached on disk: its file's header names its key (the tensors are not read)."""
    key, file = entry(kind, path, args)
    try:
        with safe_open(str(file), "pt") as f:
            return (f.metadata() or {}).get("key") == key
    except (OSError, SafetensorError, ValueError):
        return False


def _cached(kind: str, path: str, args: dict, compute):
    key, file = entry(kind, path, args)
    stored = cache.read(file, key)
    if stored is not None:
        return stored, True
    with LOCK:
        stored = cache.read(file, key)  # another thread may have made it while this one waited
        if stored is not None:
            return stored, True
        out = compute()
        cache.write(file, key, out)
    return out, False


def trace(path: str, x: torch.Tensor, *, n: int, seed: int, n_sup: int, temperature: float = 1.0,
          record: str = "transitions", latents: str = "full", halt: bool = False) -> Trace:
    """N trajectories on one input x (S,), seeds seed..seed+N-1 (so trajectory j is replayable alone).
    Raises gram.budget.BudgetError for a view past the ceilings."""
    args = trace_args(x, n=n, seed=seed, n_sup=n_sup, temperature=temperature, record=record, latents=latents,
                      halt=halt)

    def compute():
        model, cfg, _ = load(path)
        within(trace_cost(cfg, n, n_sup, record, latents))
        xt = x.long()[None].expand(n, -1).contiguous()
        return rollout(model, xt, n_sup=n_sup, seed=seed, temperature=temperature, record=record, latents=latents,
                       halt=halt, on_step=on_step).to_tensors()

    return Trace.from_tensors(_cached("trace", path, args, compute)[0])


def pca(path: str, x: torch.Tensor, tr: Trace, *, k: int, **trace_kwargs) -> analysis.Projection:
    """gram.analysis.pca (k axes) of tr, the trace `trace(path, x, **trace_kwargs)` returns, cached on disk beside
    it: a wide, deep view's fit would hold up its first open (docs/recipe.md)."""
    def compute():
        p = analysis.pca(tr.h, k=k)
        return {"coords": torch.from_numpy(p.coords), "explained": torch.from_numpy(p.explained), "mean": p.mean,
                "axes": p.axes}

    t, _ = _cached("pca", path, pca_args(x, k, **trace_kwargs), compute)
    return analysis.Projection(t["coords"].numpy(), t["explained"].numpy(), t["mean"], t["axes"])


def spread(path: str, x: torch.Tensor, tr: Trace, **trace_kwargs) -> np.ndarray:
    """gram.analysis.per_step_spread of tr (the trace `trace(path, x, **trace_kwargs)` returns), cached on disk beside
    it: pairwise distances at every step held up a first open of Trajectories by up to 0.5 s (docs/recipe.md)."""
    t, _ = _cached("spread", path, spread_args(x, **trace_kwargs),
                   lambda: {"spread": torch.from_numpy(analysis.per_step_spread(tr))})
    return t["spread"].numpy()


def batch(path: str, *, n_inputs: int, n: int, seed: int, n_sup: int) -> dict:
    """N samples for each of n_inputs held-out inputs of the checkpoint's own split (a fixed, seeded subset),
    as numpy arrays: the inputs, a gram.evaluate.SampleSet's fields (samples as decoded; answers, canonical,
    what votes count; values, valid, n_targets). Raises gram.budget.BudgetError for a view past the ceilings."""
    args = batch_args(n_inputs=n_inputs, n=n, seed=seed, n_sup=n_sup)

    def compute():
        model, cfg, _ = load(path)
        within(batch_cost(cfg, n_inputs, n, n_sup), "Lower the samples, the puzzles or the depth.")
        task = get_task(cfg.train.task)
        sub = task.split("test", cfg.train.seed).sample(n_inputs, seed=1234)
        s = draw(model, task, sub, n, depths=[n_sup], seed=seed, chunk=BATCH_CHUNK, on_step=on_step)[n_sup]
        return {"inputs": sub.inputs, "samples": s.samples, "answers": s.answers, "values": s.values, "valid": s.valid,
                "n_targets": s.n_targets}

    t, _ = _cached("batch", path, args, compute)
    return {k: v.numpy() for k, v in t.items()}


# --- time estimates --------------------------------------------------------------------------------
_STEP_SECONDS: dict[str, float] = {}  # checkpoint digest -> seconds per trajectory per supervision step


def step_seconds(path: str) -> float:
    """Measured once per checkpoint: a 16-trajectory, 2-step rollout, timed (refused like a view when that
    alone passes the ceilings: a config with T = 100000)."""
    dig = digest(path)
    if dig not in _STEP_SECONDS:
        model, cfg, _ = load(path)
        within(trace_cost(cfg, 16, 3, record="none"))
        task = get_task(cfg.train.task)
        x = torch.full((16, cfg.model.seq_len), 1, dtype=torch.long) if not task.unconditional else \
            task.empty_input()[None].expand(16, -1)
        with LOCK:
            rollout(model, x, n_sup=1, record="none")  # the first call pays for allocation
            t0 = time.perf_counter()
            rollout(model, x, n_sup=2, record="none")
            _STEP_SECONDS[dig] = (time.perf_counter() - t0) / 32
    return _STEP_SECONDS[dig]


def estimate_seconds(path: str, rows: int, n_sup: int) -> float:
    """How long `rows` trajectories of n_sup supervision steps take here, from the measured step time."""
    return step_seconds(path) * rows * n_sup


# --- the default view of every page, made ahead --------------------------------------------------------
def default_views(path: str) -> list[tuple[str, dict]]:
    """(page, the rollout arguments of its default view) for the checkpoint at path."""
    _, cfg, card = load(path)
    task = get_task(cfg.train.task)
    x = default_input(task, cfg.train.seed)
    temp = temperature(card, cfg)
    out = []
    for page in ("recursion", "tour", "trajectories", "generation", "coverage"):
        p = PAGE[page]
        out.append((page, {"x": x, "n": p["n"], "seed": 0, "n_sup": depth(page, card, cfg),
                           "temperature": temp, "record": p["record"],
                           "latents": p["latents"]}))
    if not task.unconditional:
        out.append(("selection", {"n_inputs": PAGE["selection"]["p"], "n": PAGE["selection"]["n"], "seed": 0,
                                  "n_sup": depth("selection", card, cfg)}))
    return out


def warm(paths: list[str], log=print, stop: threading.Event | None = None) -> int:
    """Make the default views of the checkpoints at paths (and the data splits they read). Returns how many
    were computed rather than found."""
    made = 0
    for path in paths:
        try:
            _, cfg, _ = load(path)
            task = get_task(cfg.train.task)
            task.split("test", cfg.train.seed)
            task.split("train", cfg.train.seed)  # known solutions of a preset may live there
            for page, args in default_views(path):
                if stop is not None and stop.is_set():
                    return made
                t0 = time.perf_counter()
                if page == "selection":
                    found = on_disk("batch", path, batch_args(**args))
                    batch(path, **args)
                else:
                    kw = {k: v for k, v in args.items() if k != "x"}
                    k, spreads = PAGE[page].get("pca"), PAGE[page].get("spread", False)
                    found = on_disk("trace", path, trace_args(**args)) and (
                        k is None or on_disk("pca", path, pca_args(args["x"], k, **kw))) and (
                        not spreads or on_disk("spread", path, spread_args(**args)))
                    tr = trace(path, **args)
                    if k is not None:
                        pca(path, args["x"], tr, k=k, **kw)
                    if spreads:
                        spread(path, args["x"], tr, **kw)
                made += not found  # counted once made: a view refused or failed raises past this
                log(f"{Path(path).name} {page}: {time.perf_counter() - t0:.2f}s")
        except Exception as e:  # a broken checkpoint must not stop the others
            log(f"{Path(path).name}: skipped ({type(e).__name__}: {e})")
    return made
