"""The explorer's plumbing: data made once and read after, views cached against their checkpoint, defaults
from the card, and the small analyses the stepping views draw."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import last_json, run_gram
from gram import analysis
from gram.cards import inference
from gram.rollout import Trace, rollout
from gram.tasks import NQueens, cache, get_task
from gram.tasks import base as task_base


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAM_CACHE", str(tmp_path / "cache"))
    task_base._SPLITS.clear()
    yield tmp_path / "cache"
    task_base._SPLITS.clear()


def counting_builds(monkeypatch) -> list:
    built = []
    original = NQueens.build_split

    def build(self, name, seed):
        built.append((self.name, name, seed))
        return original(self, name, seed)

    monkeypatch.setattr(NQueens, "build_split", build)
    return built


# --- data made once ------------------------------------------------------------------------------
def test_a_split_is_built_once_then_read(fresh_cache, monkeypatch):
    built = counting_builds(monkeypatch)
    task = get_task("nqueens7")
    first = task.split("train", 3)
    task_base._SPLITS.clear()  # a new process: only the disk remains
    again = task.split("train", 3)
    assert built == [("nqueens7", "train", 3)]
    assert torch.equal(first.inputs, again.inputs) and torch.equal(first.targets, again.targets)
    assert torch.equal(first.owner, again.owner) and again.inputs.dtype == torch.long
    assert task.split_ready("train", 3) and not task.split_ready("train", 4)


def test_a_corrupt_or_stale_cache_is_rebuilt_not_trusted(fresh_cache, monkeypatch):
    built = counting_builds(monkeypatch)
    task = get_task("nqueens7")
    good = task.split("test", 0)
    path = task.split_path("test", 0)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # flip bits inside a tensor: the checksum no longer matches
    path.write_bytes(bytes(data))
    task_base._SPLITS.clear()
    assert torch.equal(task.split("test", 0).inputs, good.inputs)
    assert len(built) == 2
    path.write_bytes(b"not a safetensors file")
    task_base._SPLITS.clear()
    task.split("test", 0)
    assert len(built) == 3
    # a generator change (data_version) names another file: the old one is never read for it
    monkeypatch.setattr(NQueens, "data_version", NQueens.data_version + 1)
    task_base._SPLITS.clear()
    assert task.split_path("test", 0) != path
    task.split("test", 0)
    assert len(built) == 4


def test_a_cache_that_cannot_be_written_only_costs_a_rebuild(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("GRAM_CACHE", str(blocker))  # a file where the cache folder should be
    task_base._SPLITS.clear()
    split = get_task("nqueens7").split("test", 0)
    assert len(split) > 0
    assert "could not cache" in capsys.readouterr().err
    task_base._SPLITS.clear()


def test_cache_key_mismatch_reads_as_missing(tmp_path):
    p = tmp_path / "t.safetensors"
    assert cache.write(p, "key-a", {"a": torch.arange(5)})
    assert torch.equal(cache.read(p, "key-a")["a"], torch.arange(5))
    assert cache.read(p, "key-b") is None
    assert cache.narrow(torch.tensor([0, 255])).dtype == torch.uint8
    assert cache.narrow(torch.tensor([-1, 300])).dtype == torch.int16


def test_gram_data_build_makes_every_split(fresh_cache):
    r = run_gram("data", "--build", "--task", "nqueens7", "--task", "graph_coloring8")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert {(x["task"], x["split"]) for x in rows} == {(t, s) for t in ("nqueens7", "graph_coloring8")
                                                        for s in ("train", "test")}
    assert all(get_task(t).split_path(s, 0).is_file() for t in ("nqueens7", "graph_coloring8") for s in ("train", "test"))


# --- defaults from the card ----------------------------------------------------------------------
def test_inference_defaults_read_the_card():
    assert inference({}, 4) == {"n_sup": 4, "temperature": 1.0, "samples": 20, "halt_at": 0.9}
    evaluated = {"metrics": {"test_64_samples": {"samples": 64, "n_sup": 256, "temperature": 1.0}}}
    assert inference(evaluated, 4)["n_sup"] == 256 and inference(evaluated, 4)["samples"] == 64
    explicit = {**evaluated, "inference": {"n_sup": 32, "temperature": 0.5, "halt_at": 0.8}}
    assert inference(explicit, 4) == {"n_sup": 32, "temperature": 0.5, "samples": 64, "halt_at": 0.8}
    junk = {"inference": {"n_sup": "many", "temperature": float("nan"), "samples": True, "halt_at": 2}}
    assert inference(junk, 4) == inference({}, 4)
    assert inference({"metrics": "junk", "inference": [1]}, 4) == inference({}, 4)


def test_eval_and_sample_default_to_the_cards_settings(tiny_copy):
    card = json.loads((tiny_copy / "card.json").read_text())
    card["inference"] = {"n_sup": 3, "temperature": 0.5, "samples": 4, "halt_at": 0.9}
    (tiny_copy / "card.json").write_text(json.dumps(card))
    r = run_gram("eval", "--checkpoint", tiny_copy, "--limit", "4")
    assert r.returncode == 0, r.stderr
    res = last_json(r.stdout)
    assert (res["n_sup"], res["temperature"], res["samples"]) == (3, 0.5, 4)
    r = run_gram("eval", "--checkpoint", tiny_copy, "--limit", "2", "--n-sup", "2", "--samples", "3", "--card")
    card = json.loads((tiny_copy / "card.json").read_text())
    assert card["inference"] == {"n_sup": 2, "temperature": 0.5, "samples": 3, "halt_at": 0.9}


def test_shipped_cards_name_their_inference_settings():
    from conftest import ROOT

    for d in sorted((ROOT / "checkpoints").iterdir()):
        card = json.loads((d / "card.json").read_text())
        if any(k.startswith("test_") for k in card.get("metrics", {})):
            assert set(card["inference"]) == {"n_sup", "temperature", "samples", "halt_at"}, d.name


# --- traces on disk and the analyses the views draw ----------------------------------------------
def test_trace_round_trips_through_tensors(tiny_checkpoint):
    from gram.checkpoint import load_checkpoint

    model, cfg, _ = load_checkpoint(tiny_checkpoint)
    x = get_task(cfg.train.task).split("test", 0).inputs[:3]
    tr = rollout(model, x, n_sup=2, seed=5, record="transitions")
    back = Trace.from_tensors(tr.to_tensors())
    assert back.seeds == tr.seeds
    for k in ("sup", "trans", "h", "pred", "probs", "value", "halt", "live", "final"):
        assert torch.equal(getattr(back, k), getattr(tr, k)), k
    assert set(back.noise) == set(tr.noise)


def test_views_are_cached_against_their_checkpoint(tiny_copy, fresh_cache, monkeypatch):
    from app import views

    x = get_task("nqueens8").split("test", 0).inputs[0]
    first = views.trace(str(tiny_copy), x, n=2, seed=0, n_sup=2)
    monkeypatch.setattr(views, "rollout", lambda *a, **k: pytest.fail("rolled out again"))
    again = views.trace(str(tiny_copy), x, n=2, seed=0, n_sup=2)
    assert torch.equal(first.h, again.h)
    # new weights are another checkpoint: its view is computed, not read
    w = tiny_copy / "model.safetensors"
    from safetensors.torch import load_file, save_file
    t = load_file(str(w))
    t["h0"] = t["h0"] + 1
    save_file(t, str(w))
    with pytest.raises(pytest.fail.Exception):
        views.trace(str(tiny_copy), x, n=2, seed=0, n_sup=2)


def test_the_warmer_makes_every_default_view_its_pca_and_spread(tiny_copy, fresh_cache, monkeypatch):
    from app import views

    path = str(tiny_copy)
    assert views.warm([path], log=lambda _: None) == len(views.default_views(path))
    for page, args in views.default_views(path):
        kw = {k: v for k, v in args.items() if k != "x"}
        k, spreads = views.PAGE[page].get("pca"), views.PAGE[page].get("spread", False)
        if not (k or spreads):
            continue
        assert not k or views.on_disk("pca", path, views.pca_args(args["x"], k, **kw))
        assert not spreads or views.on_disk("spread", path, views.spread_args(**args))
        tr = views.trace(path, **args)
        with monkeypatch.context() as m:  # read from disk, not computed again
            m.setattr(views.analysis, "pca", lambda *a, **_: pytest.fail("fitted again"))
            m.setattr(views.analysis, "per_step_spread", lambda *a, **_: pytest.fail("computed again"))
            p = views.pca(path, args["x"], tr, k=k, **kw) if k else None
            spread = views.spread(path, args["x"], tr, **kw) if spreads else None
        if p is not None:
            fit = analysis.pca(tr.h, k=k)
            assert np.allclose(p.coords, fit.coords) and np.allclose(p.explained, fit.explained)
        if spread is not None:
            assert np.allclose(spread, analysis.per_step_spread(tr))
    assert views.warm([str(tiny_copy)], log=lambda _: None) == 0  # all on disk: nothing computed


def test_the_server_gets_ready_and_warms_the_views_at_start_before_any_visitor(tiny_copy, fresh_cache):
    import time

    from app import testkit, views

    path = str(tiny_copy)

    def made() -> bool:
        return all(views.on_disk("batch", path, views.batch_args(**args)) if page == "selection" else
                   views.on_disk("trace", path, views.trace_args(**args)) for page, args in views.default_views(path))

    env = {"GRAM_WARM": "1", "GRAM_CHECKPOINTS": str(tiny_copy.parent), "GRAM_CACHE": str(fresh_cache)}
    assert not made()
    with testkit.Server(env) as srv:
        srv.wait_healthy(120, path=srv.READY)  # times out unless the route answers ok (the imports done)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not made():
            time.sleep(0.5)
        srv.log.seek(0)
        log = srv.log.read()
    assert made(), log
    assert "Traceback" not in log, log


def _hand_trace(h: torch.Tensor, sup, trans) -> Trace:
    R, B = h.shape[:2]
    z = torch.zeros(R, B)
    return Trace(list(range(B)), torch.tensor(sup), torch.tensor(trans), h, torch.zeros(R, B, 2, dtype=torch.long),
                 torch.zeros(R, B, 2, 3), z, z, z.bool())


def test_trace_ends_are_the_last_transition_of_each_step():
    tr = _hand_trace(torch.zeros(5, 1, 2, 4), [0, 1, 1, 2, 2], [0, 1, 2, 1, 2])  # record 0: the start state
    assert tr.ends() == [2, 4] == [tr.at(1), tr.at(2)]


def test_h_change_and_varying_dims_on_a_hand_made_trace():
    h = torch.zeros(3, 1, 2, 4)
    h[1, 0, 0] = torch.tensor([3.0, 4.0, 0, 0])  # position 0 moves by 5 at record 1, back at record 2
    h[2, 0, 1, 3] = 2.0
    tr = _hand_trace(h, [1, 1, 2], [1, 2, 1])
    assert np.allclose(analysis.h_change(tr, 0), [[0, 0], [5, 0], [5, 2]])
    assert np.allclose(analysis.h_change(tr, 0, h0=torch.ones(4))[0], [2, 2])
    assert analysis.varying_dims(tr, 0, 2).tolist() == [0, 1]


def test_align_steps_pairs_records_by_step_and_transition():
    a = _hand_trace(torch.zeros(4, 1, 2, 1), [1, 1, 2, 2], [1, 2, 1, 2])
    b = _hand_trace(torch.zeros(2, 1, 2, 1), [1, 2], [1, 1])  # one transition per step
    assert analysis.align_steps(a, b).tolist() == [0, 0, 1, 1]
    c = _hand_trace(torch.zeros(1, 1, 2, 1), [1], [1])  # shorter: its last record past its end
    assert analysis.align_steps(a, c).tolist() == [0, 0, 0, 0]


def test_opening_a_page_builds_no_dataset(tmp_path, fresh_cache, monkeypatch):
    """Once the splits are on disk (as `gram data --build` or the warmer leaves them), a page reads them."""
    from app import testkit

    root = tmp_path / "ck"
    testkit.make_checkpoint(root / "nqueens7", "nqueens7", "gram")
    shutil.copytree(root / "nqueens7", root / "nqueens7-copy")
    for name in ("train", "test"):
        get_task("nqueens7").split(name, 0)
    task_base._SPLITS.clear()
    built = counting_builds(monkeypatch)
    monkeypatch.setenv("GRAM_CHECKPOINTS", str(root))
    monkeypatch.setenv("GRAM_APP_RUNS", str(tmp_path / "runs"))
    for page in (None, "recursion", "trajectories", "coverage", "selection"):
        at = testkit.open_page(page, {"g_ckpt": "nqueens7-copy"})
        assert not at.exception, [e.message for e in at.exception]
    assert built == []


OPEN_EVERY_PAGE = """
import sys
from app import testkit
for page in (None, "recursion", "trajectories", "coverage", "selection", "generation", "train"):
    at = testkit.open_page(page)
    assert not at.exception, [e.message for e in at.exception]
print(sorted(m for m in ("pandas", "pyarrow") if m in sys.modules))
"""


def test_opening_the_pages_imports_no_dataframe_library(tmp_path):
    """Nothing the figures do not need is imported: a Streamlit component given anything but bytes or a mapping
    checks it for a dataframe, which imports pandas and pyarrow (~1 s of a server's first view)."""
    from app import testkit

    testkit.make_checkpoint(tmp_path / "ck" / "nqueens7", "nqueens7", "gram")
    env = {**os.environ, "GRAM_CHECKPOINTS": str(tmp_path / "ck"), "GRAM_APP_RUNS": str(tmp_path / "runs"),
           "GRAM_WARM": "0"}
    r = subprocess.run([sys.executable, "-c", OPEN_EVERY_PAGE], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_answers_are_compared_in_their_canonical_form():
    """Graph colouring: a colouring with its colours renamed is the same answer, and the tokens the model writes
    where the input's edges are carry no answer. Commitment, disagreement and distinct answers count answers."""
    task = get_task("graph_coloring8")
    S, n = task.seq_len, task.n
    colours = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]) + 4  # COLOUR0 = 4
    renamed = torch.tensor([1, 0, 2, 1, 0, 2, 1, 0]) + 4  # colours 0 and 1 swapped: the same partition
    pred = torch.zeros(3, 2, S, dtype=torch.long)
    pred[:, :, S - n:] = colours
    pred[1, 0, S - n:] = renamed  # trajectory 0 spells its answer another way at record 1 ...
    pred[2, 0, 0] = 3  # ... and writes another token on an edge slot at record 2
    pred[2, 1, S - n] = 6  # trajectory 1 really changes its answer at record 2
    tr = _hand_trace(torch.zeros(3, 2, 2, 1), [1, 2, 3], [1, 1, 1])
    tr.pred, tr.final = pred, pred[-1]
    assert analysis.commit_steps(tr).tolist() == [2, 2]  # raw tokens: both seem to change to the end
    canon = analysis.canonical(tr, task)
    assert analysis.commit_steps(canon).tolist() == [0, 2]
    assert analysis.distinct_per_step(tr).tolist() == [1, 2, 2]
    assert analysis.distinct_per_step(canon).tolist() == [1, 1, 2]
    d = analysis.disagreement(canon)
    assert (d[:, : S - n] == 0).all() and d[2].max() == 0.5 and d[1].max() == 0  # edge slots carry no answer
    assert torch.equal(canon.final, canon.pred[-1]) and torch.equal(tr.pred, pred)  # the trace itself is kept
