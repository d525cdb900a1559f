"""The shipped checkpoints: each loads on a CPU, is small, carries a complete card, and the N-Queens pair
shows GRAM's point (multi-answer coverage@20 at least twice the deterministic recursion's)."""
from __future__ import annotations

import json

import pytest

from conftest import ROOT
from gram.checkpoint import load_checkpoint
from gram.tasks import get_task

SHIPPED = sorted(p for p in (ROOT / "checkpoints").iterdir() if (p / "model.safetensors").is_file())
CARD_KEYS = {"task", "data", "mode", "steps", "wall_seconds", "device", "parameters", "metrics", "command"}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_checkpoint_loads_and_has_a_card(path):
    model, cfg, card = load_checkpoint(path)
    assert CARD_KEYS <= set(card)
    assert card["task"] == cfg.train.task and card["mode"] == cfg.model.mode
    get_task(card["task"])  # a known task
    assert (path / "model.safetensors").stat().st_size < 4 * 2**20  # a few MB at most
    assert card["parameters"] == sum(p.numel() for p in model.parameters())
    measured = [k for k in card["metrics"] if k.startswith("test_")]
    assert measured, "the card must hold metrics measured on the test split (gram eval --card)"


@pytest.mark.parametrize("task", ["nqueens7", "nqueens8", "graph_coloring8"])
def test_gram_covers_at_least_twice_the_deterministic_answers(task):
    cov = {}
    for name in (task, f"{task}-deterministic"):
        card = json.loads((ROOT / "checkpoints" / name / "card.json").read_text())
        cov[name] = card["metrics"]["test_20_samples"]["multi_coverage"]
    assert cov[task] >= 2 * cov[f"{task}-deterministic"] > 0
