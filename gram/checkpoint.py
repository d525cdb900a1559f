"""Checkpoints: a directory of safetensors + JSON. Nothing is ever unpickled.

    model.safetensors   the weights inference uses (the EMA weights)
    config.json         the Config the weights were built from
    card.json           task, data recipe, mode, steps, wall time, device, parameters, measured metrics
    resume.safetensors  (training only) raw weights, optimiser moments, carry, RNG states
    resume.json         (training only) step, history, scalar optimiser state

Files are written to a temporary name and renamed, so an interrupted save leaves the old checkpoint whole.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import Config
from .model import GRAM


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    _atomic(Path(path), lambda p: p.write_text(json.dumps(obj, indent=2, sort_keys=True)))


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    _atomic(Path(path), lambda p: save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(p)))


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return obj


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:2] == b"\x80\x02" or head[:2] == b"PK":
        raise CheckpointError(f"{path}: a pickle/zip file (e.g. torch.save), not safetensors; refusing to unpickle it")
    try:
        return {k: v.clone() for k, v in load_file(str(path)).items()}  # detach from the file's memory map
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or foreign?): {e}") from None


def save_checkpoint(directory: str | Path, model: GRAM, cfg: Config, card: dict) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    write_tensors(d / "model.safetensors", model.state_dict())
    write_json(d / "config.json", cfg.to_dict())
    write_json(d / "card.json", card)
    return d


def _check_types(cfg: Config) -> None:
    """JSON can hold a string or a float where the config wants an int: refuse it before it reaches a layer.
    Each field must have the type of its default (an int is fine for a float; None defaults are not checked)."""
    import dataclasses
    for section in (cfg.model, cfg.train):
        defaults = type(section)()
        for f in dataclasses.fields(section):
            default, got = getattr(defaults, f.name), getattr(section, f.name)
            if default is None:
                continue
            want = (int, float) if type(default) is float else (list, tuple) if isinstance(default, (list, tuple)) \
                else type(default)
            if not isinstance(got, want) or (isinstance(got, bool) and not isinstance(default, bool)):
                raise ValueError(f"{f.name} must be {type(default).__name__}, got {got!r}")


def load_config(directory: str | Path) -> Config:
    d = Path(directory)
    try:
        cfg = Config.from_dict(read_json(d / "config.json"))
        _check_types(cfg)
        return cfg.validate()
    except (TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{d / 'config.json'}: not a GRAM config: {e}") from None


def load_checkpoint(directory: str | Path, map_location: str = "cpu") -> tuple[GRAM, Config, dict]:
    """(model in eval mode, config, card). Raises CheckpointError naming what is wrong."""
    d = Path(directory)
    if not d.is_dir():
        raise CheckpointError(f"{d}: not a checkpoint directory")
    cfg = load_config(d)
    card = read_json(d / "card.json")
    try:
        model = GRAM(cfg.model)
    except (ValueError, RuntimeError, TypeError) as e:
        raise CheckpointError(f"{d / 'config.json'}: cannot build a model from it: {e}") from None
    tensors = read_tensors(d / "model.safetensors")
    check_state(model, tensors, d / "model.safetensors")
    model.load_state_dict(tensors)
    return model.to(map_location).eval(), cfg, card


def warm_start(model: GRAM, directory: str | Path) -> None:
    """Start `model` from a checkpoint's weights. The model may hold tensors the file lacks (GRAM's guidance
    heads on top of a deterministic run's core); those keep their fresh initialisation.
    Every tensor in the file must fit the model, so a checkpoint of another size or task is refused."""
    path = Path(directory) / "model.safetensors"
    if not path.is_file():  # most often: a multi-phase recipe whose first phase has not been trained here yet
        raise CheckpointError(f"init={directory}: no model.safetensors there; train that run first (a card's "
                              "`command` gives every phase) or start from scratch with --set init=")
    tensors = read_tensors(path)
    check_state(model, tensors, path, allow_missing=True)
    model.load_state_dict(tensors, strict=False)


def check_state(model: torch.nn.Module, tensors: dict, where, allow_missing: bool = False) -> None:
    expected = model.state_dict()
    missing = [] if allow_missing else sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = [f"{k} {tuple(tensors[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in tensors and tensors[k].shape != v.shape]
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[:3]})")
        if extra:
            parts.append(f"{len(extra)} unexpected tensors (e.g. {extra[:3]})")
        if wrong:
            parts.append(f"shapes differ from config.json (file vs config): {wrong[:3]}")
        raise CheckpointError(f"{where}: weights do not match config.json: " + "; ".join(parts))
