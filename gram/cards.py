"""What a checkpoint's card says about how to run it.

A card (card.json) records the task, the training and the held-out evaluations (`gram eval --card` writes
`metrics.test_<N>_samples`). Its `inference` entry names the settings those numbers were measured at:
depth n_sup, temperature, samples per input and the ACT threshold. `gram sample`, `eval`, `scale` and the
app start from them, so a user sees what the checkpoint can do without knowing how it was read.

A card is a file anyone can edit or upload: `check_card` is the one type check of the fields that code reads.
The app drops a bad field and says so; the command line (`read_card`: `eval --card`, `results`) refuses the
card with the same message.
"""
from __future__ import annotations

import math
from pathlib import Path

from .checkpoint import CheckpointError, read_json
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


# the fields code reads, and what each must be; others are kept as they are
TEXT, COUNT, NUMBER = ("task", "mode", "init"), ("steps", "parameters"), ("wall_seconds",)
OBJECTS = ("metrics", "inference")
EVAL_TEXT = ("task", "mode")  # in an evaluation (metrics.test_<N>_samples), every other value is a number


def check_card(card: dict) -> tuple[dict, list[str]]:
    """(the card without its badly typed fields, one message per field dropped). An evaluation in `metrics` with
    a value of the wrong type is dropped whole: its numbers go together."""
    out, problems = dict(card), []

    def bad(name: str, want: str, got) -> None:
        problems.append(f"{name} must be {want}, got {_show(got)}")

    for k in TEXT + COUNT + NUMBER + OBJECTS:
        if k not in out:
            continue
        v = out[k]
        if k in TEXT and not isinstance(v, str):
            bad(k, "a string", v)
        elif k in COUNT and not _number(v, 0, math.inf, True):
            bad(k, "a whole number >= 0", v)
        elif k in NUMBER and not _number(v, 0, math.inf, False):
            bad(k, "a finite number >= 0", v)
        elif k in OBJECTS and not isinstance(v, dict):
            bad(k, "an object", v)
        else:
            continue
        del out[k]
    metrics = dict(out.get("metrics", {}))
    for k, v in list(metrics.items()):
        if isinstance(v, dict):
            wrong = next((f for f, x in v.items() if not (isinstance(x, str) if f in EVAL_TEXT else
                                                         _number(x, -math.inf, math.inf, False))), None)
            if wrong is not None:
                bad(f"metrics.{k}.{wrong}", "a string" if wrong in EVAL_TEXT else "a finite number", v[wrong])
                del metrics[k]
        elif not _number(v, -math.inf, math.inf, False):
            bad(f"metrics.{k}", "a finite number or an evaluation", v)
            del metrics[k]
    if "metrics" in out:
        out["metrics"] = metrics
    return out, problems


def read_card(path: str | Path) -> dict:
    """A card.json, refused (CheckpointError naming the file and the fields) when a field has the wrong type."""
    card, problems = check_card(read_json(Path(path)))
    if problems:
        raise CheckpointError(f"{path}: {'; '.join(problems)}")
    return card


def _show(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:40] + "..."


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
