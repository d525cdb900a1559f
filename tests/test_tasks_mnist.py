"""Binarized MNIST: data, IDX reading, text, the shipped classifier, IS / FD, a tiny training run."""
import gzip

import pytest
import torch

from gram.evaluate import SampleSet, metrics
from gram.tasks import get_task
from gram.tasks.mnist import MNIST, OFF, ON, binarise, mnist_digits, read_idx
from gram.tasks.mnist_classifier import classify, frechet_distance, inception_score


@pytest.fixture(scope="module")
def task():
    return get_task("mnist")


def idx_bytes(tensor, magic):
    head = bytes([0, 0, 8, magic]) + b"".join(int(d).to_bytes(4, "big") for d in tensor.shape)
    return head + tensor.to(torch.uint8).flatten().numpy().tobytes()


def test_split(task):
    train, test = task.split("train"), task.split("test")
    assert (len(train.targets), len(test.targets)) == (4500, 500)
    assert len(train) == len(test) == 1 and (train.inputs == 0).all()
    assert set(train.targets.unique().tolist()) == {OFF, ON}
    _, ytr, _, yte = mnist_digits()
    assert torch.bincount(ytr).tolist() == [450] * 10 and torch.bincount(yte).tolist() == [50] * 10
    assert task.is_correct(train.inputs.expand(10, -1), train.targets[:10]).all()
    assert task.seq_len == 784 and task.codec == "patch" and task.image_side == 28


def test_binarise_threshold():
    grey = torch.tensor([[0, 127, 128, 255]])
    assert binarise(grey).tolist() == [[0, 0, 1, 1]]


def test_text(task):
    y = task.split("test").targets[0]
    text = task.format_output(y)
    rows = text.split("/")
    assert len(rows) == 28 and all(len(r) == 28 and set(r) <= {"0", "1"} for r in rows)
    assert torch.equal(torch.tensor([ON if ch == "1" else OFF for ch in text.replace("/", "")]), y)
    assert torch.equal(task.parse(""), task.empty_input()) and task.format_input(task.empty_input()) == ""
    with pytest.raises(ValueError, match="unconditional"):
        task.parse("0101")
    assert not task.is_correct(task.empty_input()[None], task.empty_input()[None]).item()


def test_idx_round_trip_and_folder(tmp_path):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 28, 28), generator=gen)
    labels = torch.arange(6)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(images, 3))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels, 1)))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images[:3], 3))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels[:3], 1))
    assert torch.equal(read_idx(tmp_path / "train-images-idx3-ubyte").long(), images)
    assert torch.equal(read_idx(tmp_path / "train-labels-idx1-ubyte.gz").long(), labels)
    t = MNIST(str(tmp_path))
    assert len(t.split("train").targets) == 6 and len(t.split("test").targets) == 3
    assert torch.equal(t.split("train").targets, binarise(images) + OFF)
    assert "IDX" in t.recipe()["source"]


@pytest.mark.parametrize("content, msg", [
    (b"\x00\x00\x09\x03" + b"\x00" * 12, "bad magic"),
    (b"PK\x03\x04", "bad magic"),
    (b"", "bad magic"),
    (idx_bytes(torch.zeros(2, 28), 2), "2 dimensions"),
    (idx_bytes(torch.zeros(2, 14, 14), 3), "14x14"),
    (idx_bytes(torch.zeros(2, 28, 28), 3)[:-5], "file holds"),
    (b"\x1f\x8b" + b"garbage", "broken gzip"),
])
def test_bad_idx(tmp_path, content, msg):
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=msg):
        read_idx(path)


def test_bad_idx_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="GRAM_MNIST_IDX"):
        MNIST(str(tmp_path)).split("train")
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(torch.zeros(3, 28, 28), 3))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(torch.zeros(2), 1))
    with pytest.raises(ValueError, match="n images and n labels"):
        MNIST(str(tmp_path)).split("train")


def test_scores():
    eye = torch.eye(10).double().repeat(5, 1)
    assert inception_score(eye) == pytest.approx(10)
    assert inception_score(torch.full((8, 10), 0.1).double()) == pytest.approx(1)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 5, generator=gen).double(), torch.randn(400, 5, generator=gen).double() + 2
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)
    assert frechet_distance(a, b) == pytest.approx(20, rel=0.15)  # |mu difference|^2 = 5 * 4
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(a[:1], b)


def test_classifier_and_reference(task):
    _, _, test_x, test_y = mnist_digits()
    _, probs = classify(test_x)
    assert (probs.argmax(1) == test_y).float().mean() > 0.93
    ref = task.reference()
    assert ref["inception_score"] > 8 and ref["frechet_distance"] < 20
    s = task.split("test")
    m = metrics(task, SampleSet.of(task, s, s.targets[None, ::2]))  # every class (the split is sorted by class)
    assert m["accuracy"] == 1 and m["inception_score"] > 7
    g = torch.Generator().manual_seed(0)
    noise = torch.where(torch.rand(1, 200, 784, generator=g) < 0.15, ON, OFF)
    bad = metrics(task, SampleSet.of(task, s, noise))
    assert bad["frechet_distance"] > 10 * m["frechet_distance"] and bad["inception_score"] < m["inception_score"]


def test_tiny_training_run():
    from gram.recipes import default_config
    from gram.train import Trainer

    cfg = default_config("mnist").override(["D=32", "n_layers=1", "batch=8", "n_sup=2", "eval_samples=8"])
    tr = Trainer(cfg)
    assert tr.model.L == 16  # the task default: 7x7-pixel latent patches
    logs = [tr.train_step() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(l["loss"])) for l in logs)
    assert 0 <= tr.evaluate()["prior_accuracy"] <= 1
