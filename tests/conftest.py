"""Shared fixtures: one thread (CPU is shared), a tiny trained checkpoint built
once per session, and a helper that runs `python -m gram ...` in a subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("GRAM_WARM", "0")  # no background view warmer in the app under test

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)

# the tiny recipe every test builds on: ~34k parameters, a training step in a few milliseconds
TINY = ["D=32", "n_heads=2", "n_layers=1", "batch=16", "steps=4", "n_sup=2", "eval_samples=16"]
SHIPPED = {"nqueens8": ROOT / "checkpoints" / "nqueens8",
           "nqueens8-deterministic": ROOT / "checkpoints" / "nqueens8-deterministic"}


def tiny_config(*extra: str, task: str = "nqueens8"):
    from gram.recipes import default_config
    return default_config(task).override(TINY + list(extra))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A trained (4 steps) gram-mode N-Queens-8 checkpoint directory. Treat it as read-only: tests that
    damage a checkpoint copy it first (see `tiny_copy`)."""
    from gram.train import Trainer
    d = tmp_path_factory.mktemp("tiny") / "ckpt"
    tr = Trainer(tiny_config())
    tr.fit()
    tr.save(d)
    return d


@pytest.fixture
def tiny_copy(tiny_checkpoint, tmp_path) -> Path:
    import shutil
    d = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, d)
    return d


def run_gram(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m gram ARGS` from the repo root, one thread, captured output."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "gram", *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def last_json(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert lines, "no output on stdout"
    return json.loads(lines[-1])
