"""What a checkpoint's card says about how to run it.

A card (card.json) records the task, the training and the held-out evaluations (`gram eval --card` writes
`metrics.test_<N>_samples`). Its `inference` entry names the settings those numbers were measured at:
depth n_sup, temperature, samples per input and the ACT threshold. `gram sample`, `eval`, `scale` and the
app start from them, so a user sees what the checkpoint can do without knowing how it was read.
"""
from __future__ import annotations

import math

from .rollout import HALT_AT

INFERENCE_KEYS = ("n_sup", "temperature", "samples", "halt_at")


def card_eval(card: dict, samples: int | None = None) -> dict | None:
    """The card's held-out evaluation with `samples` samples, else the one with the most."""
    metrics = card.get("metrics") if isinstance(card, dict) else None
    if not isinstance(metrics, dict):
        return None
    evals = {v["samples"]: v for k, v in metrics.items()
             if k.startswith("test_") and isinstance(v, dict) and isinstance(v.get("samples"), int)}
    if not evals:
        return None
    return evals.get(samples) or evals[max(evals)]


def _number(v, lo: float, hi: float, integer: bool) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return False
    return lo <= v <= hi and (not integer or float(v).is_integer())


def inference(card: dict | None, train_n_sup: int) -> dict:
    """{'n_sup', 'temperature', 'samples', 'halt_at'}: the card's `inference` entry, else the settings of its
    largest held-out evaluation, else training depth, temperature 1, 20 samples, HALT_AT. A value of the
    wrong type or out of range is ignored (the next source is used), never passed on."""
    out = {"n_sup": int(train_n_sup), "temperature": 1.0, "samples": 20, "halt_at": HALT_AT}
    card = card if isinstance(card, dict) else {}
    ranges = {"n_sup": (1, 4096, True), "temperature": (0, 10, False), "samples": (1, 100_000, True),
              "halt_at": (0, 1, False)}
    for source in (card_eval(card) or {}, card.get("inference") if isinstance(card.get("inference"), dict) else {}):
        for k in INFERENCE_KEYS:
            if k in source and _number(source[k], *ranges[k]):
                out[k] = type(out[k])(source[k])
    return out


def inference_of(result: dict) -> dict:
    """The `inference` entry for a card from an evaluation's result (what `gram eval --card` stores)."""
    return {"n_sup": result["n_sup"], "temperature": result.get("temperature", 1.0), "samples": result["samples"],
            "halt_at": result.get("halt_at", HALT_AT)}
