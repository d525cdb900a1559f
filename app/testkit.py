"""Helpers for the app's tests and benchmark: tiny checkpoints, and the app's figures read back from AppTest."""
from __future__ import annotations

import json
from pathlib import Path

TINY = ["D=32", "n_layers=1", "batch=8", "steps=3", "n_sup=2", "eval_samples=8"]
MAIN = str(Path(__file__).resolve().parent / "main.py")


def make_checkpoint(directory: str | Path, task: str = "nqueens7", mode: str = "gram", extra: list[str] | None = None) -> Path:
    """A tiny trained checkpoint (a few optimiser steps): enough for every page to have something to draw."""
    from gram.train import Trainer, default_config

    cfg = default_config(task).override(TINY + [f"mode={mode}"] + (extra or []))
    tr = Trainer(cfg)
    tr.fit()
    return tr.save(directory)


def figures(at) -> dict:
    """{chart key or index: plotly figure dict} for every st.plotly_chart on the AppTest's current page."""
    out = {}
    for k, el in enumerate(at.get("plotly_chart")):
        spec = json.loads(el.proto.spec)
        parts = (getattr(el.proto, "id", "") or "").split("-", 2)  # '$$ID-<hash>-<user key>'
        out[parts[2] if len(parts) == 3 and parts[2] else str(k)] = spec
    return out


def trace_names(fig: dict) -> list[str]:
    return [t.get("name", "") for t in fig.get("data", [])]


def trace_types(fig: dict) -> list[str]:
    return [t.get("type", "scatter") for t in fig.get("data", [])]
