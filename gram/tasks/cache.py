"""Tensors kept on disk under a key, so that what is slow to make is made once per machine.

Files live under $GRAM_CACHE (default ~/.cache/gram). A file's metadata repeats its key and a SHA-256 of
its tensors; a file whose key or checksum does not match, or that does not read, counts as missing, so a
stale or corrupt cache is rebuilt, never trusted. Writes go to a per-process temporary name and are renamed
into place: an interrupted or concurrent writer leaves either the old file or a complete new one.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file


def cache_root() -> Path:
    return Path(os.environ.get("GRAM_CACHE") or Path.home() / ".cache" / "gram")


def checksum(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def read(path: Path, key: str) -> dict[str, torch.Tensor] | None:
    """The tensors stored at path under key, or None when missing, unreadable, stale or corrupt."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if meta.get("key") != key:
            return None
        tensors = load_file(str(path))
    except (OSError, SafetensorError, ValueError, RuntimeError):
        return None
    return tensors if meta.get("sha256") == checksum(tensors) else None


def write(path: Path, key: str, tensors: dict[str, torch.Tensor]) -> bool:
    """Best effort: a cache that cannot be written (read-only or full disk) costs a rebuild next time."""
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}  # clone: no shared storage
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(tmp), metadata={"key": key, "sha256": checksum(tensors)})
        os.replace(tmp, path)
        return True
    except OSError as e:
        print(f"note: could not cache {path.name} ({e.strerror or e}); it is made again next time", file=sys.stderr)
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # the folder itself is unusable: there is no temporary file either
            pass
        return False


def narrow(t: torch.Tensor) -> torch.Tensor:
    """An integer tensor in the narrowest type that holds it (a Sudoku train split: 11 MB, not 85)."""
    lo, hi = (int(t.min()), int(t.max())) if t.numel() else (0, 0)
    for dtype in (torch.uint8, torch.int16, torch.int32):
        info = torch.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return t.to(dtype)
    return t
