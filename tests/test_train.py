"""Training: a tiny model fits a few puzzles, runs are reproducible and resume exactly, the leak detector,
the callback, and `bench learn`'s JSON contract."""
from __future__ import annotations

import shutil

import pytest
import torch
from conftest import last_json, run_gram, tiny_config

from gram.checkpoint import CheckpointError
from gram.rollout import rollout
from gram.train import LEAK_WARNING, Trainer, detect_leak


def few_pairs(tr: Trainer, k: int = 4):
    """Restrict training to k inputs that have exactly one valid completion each."""
    s = tr.train_split
    one = torch.nonzero(s.n_targets() == 1).flatten()[:k]
    tr.train_split = s.subset(one)
    assert len(tr.train_split.targets) == k
    return tr.train_split


def test_tiny_model_fits_a_few_puzzles():
    """Deterministic mode, 4 training pairs: exact on all of them in ~80 steps (a few seconds)."""
    tr = Trainer(tiny_config("mode=deterministic", "K=1", "T=1", "n_sup=2", "lr=3e-3", "warmup=10", "weight_decay=0",
                             "steps=80"))
    s = few_pairs(tr)
    ce = [tr.train_step()["ce"] for _ in range(80)]
    assert ce[-1] < 0.1 * ce[0]
    final = rollout(tr.model, s.inputs, n_sup=2, record="none").final
    assert (final == s.targets).float().mean() > 0.99  # cell accuracy
    assert (final == s.targets).all(1).float().mean() >= 0.75  # boards exactly right
    assert tr.task.is_correct(s.inputs, final).float().mean() >= 0.75


def test_gram_posterior_fits_a_few_puzzles():
    """gram mode: the posterior-steered rows learn the same 4 pairs (the KL keeps the prior close)."""
    tr = Trainer(tiny_config("mode=gram", "K=1", "T=1", "n_sup=2", "lr=3e-3", "warmup=10", "weight_decay=0",
                             "prior_frac=0"))
    few_pairs(tr)
    logs = [tr.train_step() for _ in range(80)]
    assert sum(r["train_accuracy"] for r in logs[-10:]) / 10 > 0.75
    assert all(torch.isfinite(torch.tensor([r["loss"], r["kl"], r["sigma_p"]])).all() for r in logs)
    assert logs[-1]["ce"] < 0.1 * logs[0]["ce"]


def weights(tr: Trainer) -> dict:
    return {**{f"model.{k}": v.clone() for k, v in tr.model.state_dict().items()},
            **{f"ema.{k}": v.clone() for k, v in tr.ema.state_dict().items()}}


def assert_same(a: dict, b: dict):
    assert set(a) == set(b)
    bad = [k for k in a if not torch.equal(a[k], b[k])]
    assert not bad, f"{len(bad)} tensors differ, e.g. {bad[:3]}"


def test_reproducible_with_a_seed():
    def run(seed):
        tr = Trainer(tiny_config("steps=5", f"seed={seed}"))
        hist = tr.fit()
        return weights(tr), [{k: v for k, v in r.items() if k != "wall"} for r in hist]

    (w1, h1), (w2, h2) = run(0), run(0)
    assert_same(w1, w2)
    assert h1 == h2
    w3, _ = run(1)
    assert any(not torch.equal(w1[k], w3[k]) for k in w1)


@pytest.mark.parametrize("mode", ["gram", "deterministic"])
def test_exact_resume(tmp_path, mode):
    """N steps in one go == N/2 steps, save, resume from disk, N/2 more: identical weights, EMA and optimiser."""
    extra = [f"mode={mode}", "steps=6", "batch=8", "n_sup=2", "eval_every=2", "warmup=3"]  # carry rows turn over
    one = Trainer(tiny_config(*extra))
    one.fit()
    half = Trainer(tiny_config(*extra), out=tmp_path / "run")
    half.fit(steps=3)
    assert half.step == 3
    del half
    resumed = Trainer.resume(tmp_path / "run")
    assert resumed.step == 3
    resumed.fit()
    assert resumed.step == 6
    assert_same(weights(one), weights(resumed))
    sa, sb = one.opt.state_dict()["state"], resumed.opt.state_dict()["state"]
    assert set(sa) == set(sb)
    for i in sa:
        assert set(sa[i]) == set(sb[i])
        for k in sa[i]:
            assert torch.equal(torch.as_tensor(sa[i][k]), torch.as_tensor(sb[i][k])), (i, k)
    steps_one = [{k: v for k, v in r.items() if k != "wall"} for r in one.history if "loss" in r]
    steps_res = [{k: v for k, v in r.items() if k != "wall"} for r in resumed.history if "loss" in r]
    assert steps_one == steps_res
    assert torch.equal(one.carry.h, resumed.carry.h) and torch.equal(one.carry.n, resumed.carry.n)


def test_resume_refuses_a_damaged_run(tmp_path):
    from gram.checkpoint import CheckpointError
    tr = Trainer(tiny_config("steps=2"), out=tmp_path / "run")
    tr.fit()
    p = tmp_path / "run" / "resume.safetensors"
    p.write_bytes(p.read_bytes()[:64])
    with pytest.raises(CheckpointError, match="resume.safetensors"):
        Trainer.resume(tmp_path / "run")


# --- the leak detector -------------------------------------------------------------------------------------
def ev(post, prior):
    return {"step": 0, "posterior_accuracy": post, "prior_accuracy": prior}


STEP = {"step": 1, "loss": 0.3, "train_accuracy": 1.0}


@pytest.mark.parametrize("history,patience,fires", [
    ([ev(1.0, 0.0)] * 3, 3, True),
    ([STEP, ev(0.9, 0.1), STEP, STEP, ev(0.95, 0.0), STEP, ev(1.0, 0.2)], 3, True),  # step logs in between
    ([ev(1.0, 0.0)] * 2, 3, False),  # not yet `patience` evaluations
    ([ev(1.0, 0.0), ev(1.0, 0.9), ev(1.0, 0.0)], 3, False),  # the prior caught up once
    ([ev(1.0, 0.0)] * 3 + [ev(0.9, 0.8)], 3, False),  # ... and now it is fine
    ([ev(0.9, 0.8)] + [ev(1.0, 0.0)] * 3, 3, True),  # only the last `patience` count
    ([ev(0.6, 0.2)] * 5, 3, False),  # a gap below 0.5 is learning, not leaking
    ([ev(0.8, 0.2)] * 5, 3, True),
    ([ev(0.3, 0.3)] * 5, 3, False),  # both bad: no leak, just no learning
    ([], 3, False),
    ([STEP] * 10, 1, False),
    ([ev(1.0, 0.0)], 1, True),
])
def test_detect_leak(history, patience, fires):
    assert detect_leak(history, patience) is fires


def test_leak_warning_fires_once_in_training():
    tr = Trainer(tiny_config("steps=4", "eval_every=1", "leak_patience=2"))
    tr.evaluate = lambda: {"step": tr.step, "prior_accuracy": 0.0, "posterior_accuracy": 1.0}
    warnings = []
    tr.fit(warn=warnings.append)
    assert warnings == [LEAK_WARNING.format(n=2)]
    assert tr.leak_warned


def test_no_leak_warning_when_prior_follows():
    tr = Trainer(tiny_config("steps=3", "eval_every=1", "leak_patience=1"))
    tr.evaluate = lambda: {"step": tr.step, "prior_accuracy": 0.9, "posterior_accuracy": 1.0}
    warnings = []
    tr.fit(warn=warnings.append)
    assert warnings == []


# --- the loop -------------------------------------------------------------------------------------------
def test_callback_called_with_logs():
    tr = Trainer(tiny_config("steps=4", "eval_every=2"))
    logs = []
    hist = tr.fit(callback=logs.append)
    assert logs == hist
    steps = [r for r in logs if "loss" in r]
    evals = [r for r in logs if "prior_accuracy" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert [r["step"] for r in evals] == [2, 4]
    for r in steps:  # what a leak is seen by: posterior and prior accuracy, the true KL, sigma
        for key in ("loss", "ce", "train_accuracy", "train_prior_accuracy", "kl", "sigma_p", "sigma_q", "lr",
                    "grad_norm", "wall"):
            assert key in r, key
        assert 0 <= r["train_accuracy"] <= 1 and r["kl"] >= 0
    for r in evals:
        assert {"prior_accuracy", "posterior_accuracy", "wall"} <= set(r)


def test_should_stop_and_time_budget():
    tr = Trainer(tiny_config("steps=100"))
    tr.fit(should_stop=lambda: tr.step >= 2)
    assert tr.step == 2
    tr.fit(max_seconds=0.0)
    assert tr.step == 2
    tr.fit(steps=3)
    assert tr.step == 3


def test_warmup_and_decay_groups():
    tr = Trainer(tiny_config("warmup=4", "lr=0.01", "weight_decay=0.5"))
    used = []
    for _ in range(5):
        tr.train_step()
        used.append(tr.opt.param_groups[0]["lr"])  # the rate the step just used
    assert used[0] < used[1] < used[2] < used[3] == pytest.approx(0.01) == used[4]
    decayed = {id(p) for p in tr.opt.param_groups[0]["params"]}
    assert tr.opt.param_groups[0]["weight_decay"] == 0.5 and tr.opt.param_groups[1]["weight_decay"] == 0.0
    for name, p in tr.model.named_parameters():  # decay on matrices only, never embeddings, positions, biases
        should = p.ndim >= 2 and "embed" not in name and name != "pos"
        assert (id(p) in decayed) == should, name


def test_logged_lr_is_the_rate_used():
    tr = Trainer(tiny_config("warmup=4", "lr=0.01"))
    for _ in range(3):
        log = tr.train_step()
        assert log["lr"] == tr.opt.param_groups[0]["lr"]


def test_card_after_training(tmp_path):
    tr = Trainer(tiny_config("steps=2"), out=tmp_path / "c")
    tr.fit()
    card = tr.card()
    assert card["task"] == "nqueens8" and card["steps"] == 2 and card["mode"] == "gram"
    assert card["data"]["seed"] == 0 and card["parameters"] > 0
    assert "held_out_prior_accuracy_1_sample" in card["metrics"]
    assert {p.name for p in (tmp_path / "c").iterdir()} >= {"model.safetensors", "config.json", "card.json",
                                                            "resume.safetensors", "resume.json"}


# --- bench learn ---------------------------------------------------------------------------------------
def test_bench_learn_json_contract():
    r = run_gram("bench", "learn", "--minutes", "0.05", "--set", "D=32", "--set", "n_heads=2", "--set", "n_layers=1",
                 "--set", "batch=8", "--set", "eval_samples=8", "--set", "n_sup=2", "--set", "T=1", "--set", "K=1",
                 "--mode", "both")
    assert r.returncode == 0, r.stderr[-2000:]
    out = last_json(r.stdout)
    assert out["task"] and out["minutes"] == 0.05
    for mode in ("gram", "deterministic"):
        m = out[mode]
        for key in ("prior_accuracy", "minutes_to_50", "minutes_to_90", "posterior_accuracy", "true_kl",
                    "multi_coverage"):
            assert key in m, (mode, key)
        assert 0 <= m["prior_accuracy"] <= 1 and 0 <= m["posterior_accuracy"] <= 1
        assert m["minutes_to_50"] is None or m["minutes_to_50"] <= 0.06
        assert m["multi_coverage"] is None or 0 <= m["multi_coverage"] <= 1
        assert m["true_kl"] >= 0
    assert out["deterministic"]["true_kl"] == 0


def test_schedules():
    """cosine decays from the end of warm-up, wsd holds the rate until its last `decay` steps; both end at 0.1 lr."""
    def rates(*extra):
        tr = Trainer(tiny_config("lr=1.0", "warmup=10", "steps=100", *extra))
        out = []
        for s in range(100):
            tr.step = s
            out.append(tr._lr())
        return out
    const, cos, wsd = rates(), rates("schedule=cosine"), rates("schedule=wsd", "decay=30")
    assert const[10:] == [1.0] * 90
    assert cos[10] == 1.0 and cos[40] < 0.9 and cos[99] < 0.11
    assert wsd[10:71] == [1.0] * 61 and wsd[80] < 1.0 and wsd[99] < 0.11
    assert all(a >= b for a, b in zip(wsd[70:], wsd[71:]))


def test_prior_ce_adds_the_prior_rows_cross_entropy():
    """prior_ce trains the core on the prior-rollout rows too: the same batch and forward, another update."""
    a = Trainer(tiny_config("prior_frac=0.5"))
    b = Trainer(tiny_config("prior_frac=0.5", "prior_ce=1"))
    la, lb = a.train_step(), b.train_step()
    assert la["ce"] == lb["ce"] and la["train_prior_accuracy"] == lb["train_prior_accuracy"]
    wa, wb = weights(a), weights(b)
    assert not torch.equal(wa["model.f_L.0.mlp.down.weight"], wb["model.f_L.0.mlp.down.weight"])


def test_prior_ce_needs_prior_rows():
    with pytest.raises(ValueError, match="prior_ce"):
        tiny_config("prior_frac=0", "prior_ce=1").validate()
    with pytest.raises(ValueError, match="prior_ce"):
        tiny_config("prior_ce=-1").validate()


def test_init_warm_starts_gram_from_a_deterministic_run(tmp_path):
    """init copies a deterministic run's core into a GRAM model; the guidance heads start fresh, so the first
    GRAM update is the deterministic one plus noise. A resumed run needs the init checkpoint no more."""
    det = Trainer(tiny_config("mode=deterministic", "steps=2"))
    det.fit()
    det.save(tmp_path / "det")
    tr = Trainer(tiny_config("mode=gram", f"init={tmp_path / 'det'}"), out=tmp_path / "gram")
    core = det.ema.state_dict()
    for module in (tr.model, tr.ema):
        sd = module.state_dict()
        assert all(torch.equal(sd[k], v) for k, v in core.items())
    fresh = Trainer(tiny_config("mode=gram")).model.state_dict()
    assert all(torch.equal(v, fresh[k]) for k, v in tr.model.state_dict().items() if k not in core)
    assert any(k.startswith("prior.") for k in tr.model.state_dict() if k not in core)
    tr.fit()
    assert tr.card()["init"] == str(tmp_path / "det") and "init" not in det.card()
    tr.save()
    shutil.rmtree(tmp_path / "det")
    assert Trainer.resume(tmp_path / "gram").step == tr.step


def test_init_refuses_a_checkpoint_of_another_size(tmp_path, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="shapes differ"):
        Trainer(tiny_config("D=64", f"init={tiny_checkpoint}"))
    with pytest.raises(CheckpointError, match="train that run first"):
        Trainer(tiny_config(f"init={tmp_path / 'nowhere'}"))
