"""The rollouts behind the app's views, cached on disk, and the default view of every page.

No Streamlit here: `python -m app.warm` (which the server also starts in the background) calls the same functions
as the pages, so a view the warmer made is the view a page opens. A cached rollout is keyed by a digest of its
checkpoint's files (weights, config) and every argument; a re-saved checkpoint gets new entries, and an entry
that does not match or does not read is recomputed (gram.tasks.cache). Files live under
$GRAM_CACHE/views (default ~/.cache/gram/views).
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from functools import lru_cache
from pathlib import Path

import torch

from gram.cards import inference
from gram.checkpoint import load_checkpoint
from gram.rollout import Trace, rollout, sample
from gram.tasks import cache, get_task

ASSETS = Path(__file__).resolve().parent.parent / "assets"
# what each page shows before it is touched; depth and noise scale come from the checkpoint's card
PAGE = {
    "recursion": {"n": 1, "record": "transitions", "latents": "full", "max_depth": 64},
    "trajectories": {"n": 32, "record": "transitions", "latents": "full", "max_depth": 32},
    "coverage": {"n": 64, "record": "steps", "latents": "pooled", "max_depth": 64},
    "generation": {"n": 12, "record": "steps", "latents": "pooled", "max_depth": 256},
    "tour": {"n": 16, "record": "transitions", "latents": "pooled", "max_depth": 32},
    "selection": {"n": 16, "p": 16, "max_depth": 32},
}
_LOCK = threading.Lock()  # one rollout at a time per process: two would only share the same two cores


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
    return load_checkpoint(path)


def load(path: str):
    """(model, cfg, card) of the checkpoint at path; raises CheckpointError."""
    return _load(str(path), digest(path))


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


def _cached(kind: str, path: str, args: dict, compute):
    key = json.dumps({"kind": kind, "checkpoint": digest(path), **args}, sort_keys=True)
    file = cache.cache_root() / "views" / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.safetensors"
    stored = cache.read(file, key)
    if stored is not None:
        return stored, True
    with _LOCK:
        stored = cache.read(file, key)  # another thread may have made it while this one waited
        if stored is not None:
            return stored, True
        out = compute()
        cache.write(file, key, out)
    return out, False


def trace(path: str, x: torch.Tensor, *, n: int, seed: int, n_sup: int, temperature: float = 1.0,
          record: str = "transitions", latents: str = "full", halt: bool = False) -> Trace:
    """N trajectories on one input x (S,), seeds seed..seed+N-1 (so trajectory j is replayable alone)."""
    args = {"x": [int(v) for v in x.tolist()], "n": int(n), "seed": int(seed), "n_sup": int(n_sup),
            "temperature": float(temperature), "record": record, "latents": latents, "halt": bool(halt)}

    def compute():
        model, _, _ = load(path)
        xt = x.long()[None].expand(n, -1).contiguous()
        return rollout(model, xt, n_sup=n_sup, seed=seed, temperature=temperature, record=record, latents=latents,
                       halt=halt).to_tensors()

    return Trace.from_tensors(_cached("trace", path, args, compute)[0])


def batch(path: str, *, n_inputs: int, n: int, seed: int, n_sup: int) -> dict:
    """N samples for each of n_inputs held-out inputs of the checkpoint's own split (a fixed, seeded subset)."""
    args = {"n_inputs": int(n_inputs), "n": int(n), "seed": int(seed), "n_sup": int(n_sup)}

    def compute():
        model, cfg, _ = load(path)
        task = get_task(cfg.train.task)
        sub = task.split("test", cfg.train.seed).sample(n_inputs, seed=1234)
        samples, values = sample(model, sub.inputs, n, seed=seed, n_sup=n_sup, puzzle=sub.puzzle)
        P = len(sub)
        valid = task.is_correct(sub.inputs.repeat_interleave(n, 0), samples.reshape(P * n, -1)).view(P, n)
        # answers: the samples in canonical form, what a vote counts (graph colouring: not colour names)
        return {"inputs": sub.inputs, "samples": samples, "answers": task.canonical_samples(samples),
                "values": values.float(), "valid": valid, "n_targets": sub.n_targets()}

    t, _ = _cached("batch", path, args, compute)
    return {k: v.numpy() for k, v in t.items()}


# --- time estimates --------------------------------------------------------------------------------
_STEP_SECONDS: dict[str, float] = {}  # checkpoint digest -> seconds per trajectory per supervision step


def step_seconds(path: str) -> float:
    """Measured once per checkpoint: a 16-trajectory, 2-step rollout, timed."""
    dig = digest(path)
    if dig not in _STEP_SECONDS:
        model, cfg, _ = load(path)
        task = get_task(cfg.train.task)
        x = torch.full((16, cfg.model.seq_len), 1, dtype=torch.long) if not task.unconditional else \
            task.empty_input()[None].expand(16, -1)
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
                    batch(path, **args)
                else:
                    trace(path, **args)
                dt = time.perf_counter() - t0
                made += dt > 0.05
                log(f"{Path(path).name} {page}: {dt:.2f}s")
        except Exception as e:  # a broken checkpoint must not stop the others
            log(f"{Path(path).name}: skipped ({type(e).__name__}: {e})")
    return made
