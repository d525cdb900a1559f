"""Checkpoints: a directory of safetensors + JSON. Nothing is ever unpickled.

    model.safetensors   the weights inference uses (the EMA weights)
    config.json         the Config the weights were built from
    card.json           task, data recipe, mode, steps, wall time, device, parameters, measured metrics
    resume.safetensors  (training only) raw weights, optimiser moments, carry, RNG states
    resume.json         (training only) step, history, scalar optimiser state

A save is all or nothing (`save_dir`): every file is written into a staging folder beside the checkpoint,
marked complete, then swapped in by two renames; `recover` finishes or undoes a swap that a kill interrupted,
so a reader always finds one complete save, never files of two. `RunLock` keeps a second writer out.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .config import Config
from .model import GRAM


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp")  # unique: writers never share it
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


COMPLETE = ".complete"  # written last into a staging folder: everything else in it is whole


def _siblings(d: Path, kind: str) -> list[Path]:
    return sorted(d.parent.glob(f".{d.name}.{kind}-*"), key=lambda p: p.stat().st_mtime) if d.parent.is_dir() else []


def _alive(folder: Path) -> bool:
    try:
        os.kill(int(folder.name.rsplit("-", 2)[-2]), 0)
        return True
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True


def recover(directory: str | Path) -> None:
    """Finish or undo a save that was interrupted: a complete staging folder is the newest save and is swapped
    in; with none, a folder moved aside is put back; leftovers of dead writers are removed."""
    d = Path(directory)
    done = [p for p in _siblings(d, "saving") if (p / COMPLETE).is_file()]
    if done:
        if d.exists():
            os.rename(d, d.parent / f".{d.name}.old-{os.getpid()}-{secrets.token_hex(3)}")
        os.rename(done[-1], d)
        (d / COMPLETE).unlink(missing_ok=True)
    elif not d.exists() and _siblings(d, "old"):
        os.rename(_siblings(d, "old")[-1], d)
    for p in _siblings(d, "old") + [p for p in _siblings(d, "saving") if not _alive(p)]:
        shutil.rmtree(p, ignore_errors=True)


def save_dir(directory: str | Path, tensors: dict[str, dict[str, torch.Tensor]], jsons: dict[str, object]) -> Path:
    """Write a checkpoint's files all or nothing: into a staging folder (other files the checkpoint held are
    carried over), marked complete, then swapped in. A kill at any moment leaves the previous save or this
    one, whole (`recover` completes the swap); an error (a full disk) leaves the previous one and raises."""
    d = Path(directory)
    d.parent.mkdir(parents=True, exist_ok=True)
    recover(d)
    tag = f"{os.getpid()}-{secrets.token_hex(3)}"
    stage = d.parent / f".{d.name}.saving-{tag}"
    stage.mkdir()
    try:
        for name, t in tensors.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in t.items()}, str(stage / name))
        for name, obj in jsons.items():
            (stage / name).write_text(json.dumps(obj, indent=2, sort_keys=True))
        if d.is_dir():
            for p in d.iterdir():
                if p.is_file() and not (stage / p.name).exists() and p.name != COMPLETE:
                    shutil.copy2(p, stage / p.name)
        (stage / COMPLETE).write_text("")
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = d.parent / f".{d.name}.old-{tag}"
    if d.exists():
        os.rename(d, old)
    os.rename(stage, d)
    (d / COMPLETE).unlink(missing_ok=True)
    shutil.rmtree(old, ignore_errors=True)
    return d


class RunLock:
    """An exclusive lock on a run directory (a lock file beside it), held while one process writes the run;
    a second writer is refused at once instead of overwriting the first one's files."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory).parent / f".{Path(directory).name}.lock"
        self.fd = None

    def acquire(self) -> "RunLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise CheckpointError(f"{self.path.parent / self.path.name[1:-5]}: another process is writing this run "
                                  "(two trainers on one --out would overwrite each other)") from None
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def write_json(path: Path, obj) -> None:
    _atomic(Path(path), lambda p: p.write_text(json.dumps(obj, indent=2, sort_keys=True)))


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


def _refuse_pickle(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:2] == b"\x80\x02" or head[:2] == b"PK":
        raise CheckpointError(f"{path}: a pickle/zip file (e.g. torch.save), not safetensors; refusing to unpickle it")


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    _refuse_pickle(path)
    try:
        return {k: v.clone() for k, v in load_file(str(path)).items()}  # detach from the file's memory map
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or foreign?): {e}") from None


def save_checkpoint(directory: str | Path, model: GRAM, cfg: Config, card: dict,
                    extra_tensors: dict | None = None, extra_json: dict | None = None) -> Path:
    """The inference files (weights, config, card), and a run's resume files, saved all or nothing."""
    return save_dir(directory, {"model.safetensors": model.state_dict(), **(extra_tensors or {})},
                    {"config.json": cfg.to_dict(), "card.json": card, **(extra_json or {})})


def load_config(directory: str | Path) -> Config:
    d = Path(directory)
    try:
        return Config.from_dict(read_json(d / "config.json")).validate()
    except (TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{d / 'config.json'}: not a GRAM config: {e}") from None


def load_checkpoint(directory: str | Path, map_location: str = "cpu") -> tuple[GRAM, Config, dict]:
    """(model in eval mode, config, card). Raises CheckpointError naming what is wrong."""
    d = Path(directory)
    if not d.is_dir() and (_siblings(d, "saving") or _siblings(d, "old")):
        recover(d)  # a save was interrupted between its renames
    if not d.is_dir():
        raise CheckpointError(f"{d}: not a checkpoint directory")
    cfg = load_config(d)
    card = read_json(d / "card.json")
    check_shapes(cfg, d / "model.safetensors")  # before a byte is allocated: a 1 MB file may describe 37 GB
    try:
        model = GRAM(cfg.model)
    except (ValueError, RuntimeError, TypeError) as e:
        raise CheckpointError(f"{d / 'config.json'}: cannot build a model from it: {e}") from None
    tensors = read_tensors(d / "model.safetensors")
    bad = [k for k, v in tensors.items() if not v.is_floating_point() or not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{d / 'model.safetensors'}: {len(bad)} tensors are not finite floating-point "
                              f"weights (e.g. {bad[:3]}); refusing them")
    check_state(model, tensors, d / "model.safetensors")
    model.load_state_dict(tensors)
    return model.to(map_location).eval(), cfg, card


MAX_PARAMETERS = 200_000_000  # a checkpoint describing more is refused unbuilt (the paper's models: ~10M)


def check_shapes(cfg: Config, path: Path) -> None:
    """Before anything is allocated: a config whose size bound passes the ceiling is refused unbuilt (a 1 MB
    file may describe 37 GB), and the weights file's header must be readable. The exact shape check against
    the built model follows in load_checkpoint."""
    n = cfg.model.parameter_bound()
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"{path.parent / 'config.json'}: describes up to {n:,} parameters, more than the "
                              f"{MAX_PARAMETERS:,} this loader builds")
    _refuse_pickle(path)
    try:
        with safe_open(str(path), "pt") as f:
            numel = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or foreign?): {e}") from None
    if numel > n:
        raise CheckpointError(f"{path}: holds {numel:,} numbers, more than config.json's model can have ({n:,})")


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
