"""The app in front of a careless or hostile user (issue 22): a junk card, a config it refuses, a deep
checkpoint, a data variable naming a missing folder, a config too big to roll out: every page shows a message,
never an exception. Also: uploads are deleted when no longer needed, the server's rollouts run one at a time,
and the time estimate does not roll out a view already on disk."""
from __future__ import annotations

import gc
import json
import shutil
import threading
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import gram.tasks
from app import testkit
from app.testkit import open_page

ROOT = Path(__file__).resolve().parent.parent
PAGES = [None, "recursion", "trajectories", "selection", "coverage", "generation", "train"]  # None: the Tour


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return testkit.make_checkpoint(tmp_path_factory.mktemp("base") / "nqueens7", "nqueens7", "gram")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Views and splits cached in this test's own folder: what is on disk is what this test made."""
    monkeypatch.setenv("GRAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GRAM_APP_RUNS", str(tmp_path / "runs"))
    return tmp_path / "cache"


def variant(base, tmp_path, monkeypatch, config=None, card=None) -> Path:
    """A copy of the tiny checkpoint as the only one the app finds, its config.json and card.json updated
    with `config` ({section: {field: value}}) and `card` ({field: value})."""
    d = tmp_path / "ck" / "nqueens7"
    shutil.copytree(base, d)
    cfg = json.loads((d / "config.json").read_text())
    for section, fields in (config or {}).items():
        cfg[section].update(fields)
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "card.json").write_text(json.dumps({**json.loads((d / "card.json").read_text()), **(card or {})}))
    monkeypatch.setenv("GRAM_CHECKPOINTS", str(d.parent))
    return d


def every_page(params=None):
    for page in PAGES:
        at = open_page(page, params)
        assert not at.exception, (page, [e.message for e in at.exception])
        yield page, at


def texts(elements) -> str:
    return " ".join(e.value for e in elements)


JUNK_CARD = {"parameters": "many", "steps": "x", "inference": [1, 2], "wall_seconds": "slow",
             "metrics": {"test_20_samples": {"samples": 20, "accuracy": "high", "n_sup": "deep"},
                         "held_out_prior_accuracy_1_sample": "x"}}


def test_a_junk_card_breaks_no_page(base, tmp_path, monkeypatch, cache):
    variant(base, tmp_path, monkeypatch, card=JUNK_CARD)
    for page, at in every_page():
        assert not at.error, (page, texts(at.error))
        if page != "train":  # the pages that load the checkpoint say what they ignored
            warned = texts(at.warning)
            assert "card.json" in warned and "parameters must be a whole number" in warned, (page, warned)


def test_a_seed_of_2_to_the_70_is_a_message(base, tmp_path, monkeypatch, cache):
    variant(base, tmp_path, monkeypatch, config={"train": {"seed": 2**70}})
    for page, at in every_page():
        if page != "train":
            assert "seed must be in [0, 2**63)" in texts(at.error), (page, texts(at.error))


def test_a_checkpoint_trained_with_n_sup_40_opens_every_page_within_its_sliders(base, tmp_path, monkeypatch, cache):
    variant(base, tmp_path, monkeypatch, config={"train": {"n_sup": 40}}, card={"inference": {"n_sup": 40}})
    for page, at in every_page():
        assert not at.error, (page, texts(at.error))
        for s in at.slider:  # every default clamped to its slider's range
            v = s.value if isinstance(s.value, (list, tuple)) else [s.value]
            assert all(s.min <= x <= s.max for x in v), (page, s.key, s.value, s.min, s.max)


@pytest.mark.parametrize("task, var", [("sudoku", "GRAM_SUDOKU_EXTREME"), ("mnist", "GRAM_MNIST_IDX")])
def test_a_data_variable_naming_a_missing_folder_is_a_message(task, var, tmp_path, monkeypatch, cache):
    """On the shipped checkpoints: every page that reads the task's data stops with a message saying so."""
    monkeypatch.setenv(var, str(tmp_path / "no such folder"))
    monkeypatch.setenv("GRAM_CHECKPOINTS", str(ROOT / "checkpoints"))
    monkeypatch.setattr(gram.tasks, "_CACHE", {})  # a task reads its data variable when made: once per process
    for page, at in every_page({"g_task": task}):
        if page != "train":
            shown = texts(at.error)
            assert f"Cannot read the data of task {task}" in shown and "no such folder" in shown, (page, shown)


def test_a_config_too_big_to_roll_out_is_refused_on_every_page(base, tmp_path, monkeypatch, cache):
    """An uploaded config with T = 100000 once kept Selection computing forever: now every page refuses it at
    once, with the numbers, and nothing is rolled out (not even the time estimate's)."""
    import time

    from app import views

    variant(base, tmp_path, monkeypatch, config={"model": {"T": 100_000}})
    timed = []
    monkeypatch.setattr(views, "estimate_seconds", lambda *a: timed.append(a) or 0.0)
    for page, at in every_page():
        if page == "train":
            continue
        t0 = time.perf_counter()
        at.run()
        assert time.perf_counter() - t0 < 20
        shown = texts(at.error)
        assert "100,000 transitions" in shown and "refused before it started" in shown, (page, shown)
    assert not timed


# --- the time estimate --------------------------------------------------------------------------
def test_slow_notice_times_only_views_not_on_disk(base, tmp_path, monkeypatch, cache):
    from app import compute, state, views

    d = variant(base, tmp_path, monkeypatch)
    ck = state.Ckpt("nqueens7", str(d), "shipped", "nqueens7", "gram")
    x = torch.ones(49, dtype=torch.long)
    view = dict(n=4, seed=0, n_sup=2, temperature=1.0, record="steps", latents="pooled")
    timed = []
    monkeypatch.setattr(views, "step_seconds", lambda path: timed.append(path) or 10.0)
    assert "About 80 s" in compute.slow_notice(ck, "trace", x, **view)  # 10 s x 4 trajectories x 2 steps
    assert not views.on_disk("trace", str(d), views.trace_args(x, **view))
    views.trace(str(d), x, **view)
    assert views.on_disk("trace", str(d), views.trace_args(x, **view))
    assert compute.slow_notice(ck, "trace", x, **view) is None and len(timed) == 1
    batch = dict(n_inputs=2, n=2, seed=0, n_sup=1)
    views.batch(str(d), **batch)
    assert compute.slow_notice(ck, "batch", **batch) is None and len(timed) == 1
    # Selection's widest batch is rolled out in chunks: within the budget, so it is announced
    assert "8192 trajectories" in compute.slow_notice(ck, "batch", n_inputs=128, n=64, seed=0, n_sup=1)


# --- one rollout at a time ------------------------------------------------------------------------
def test_rollouts_wait_for_the_servers_lock(base, tmp_path, monkeypatch, cache):
    from app import views

    d = variant(base, tmp_path, monkeypatch)
    done = threading.Event()
    views.LOCK.acquire()
    try:
        t = threading.Thread(target=lambda: (views.trace(str(d), torch.ones(49, dtype=torch.long), n=2, seed=0,
                                                         n_sup=1), done.set()))
        t.start()
        assert not done.wait(1.0)  # another session's rollout holds the lock
    finally:
        views.LOCK.release()
    t.join(60)
    assert done.is_set()



def test_a_view_whose_session_ended_stops_computing_and_caches_nothing(base, tmp_path, monkeypatch, cache):
    from app import views

    d = variant(base, tmp_path, monkeypatch)
    x = torch.ones(49, dtype=torch.long)
    asked = []
    gone = lambda: asked.append(1) or len(asked) >= 3  # the tab closes during the third supervision step
    with views.abandon_when(gone), pytest.raises(views.Abandoned):
        views.trace(str(d), x, n=2, seed=0, n_sup=8)
    assert len(asked) == 3
    assert not views.on_disk("trace", str(d), views.trace_args(x, n=2, seed=0, n_sup=8))
    with views.abandon_when(lambda: False):  # a session still there gets its whole view
        assert len(views.trace(str(d), x, n=2, seed=0, n_sup=8).sup) == 8 * 2

# --- uploads --------------------------------------------------------------------------------------
def _upload_script(sources: list[str]):
    """Stores each checkpoint folder in `sources` as an upload, in order; records what store_upload said."""
    from pathlib import Path

    import streamlit as st

    from app import state

    class File:  # what st.file_uploader hands over: a name and the bytes
        def __init__(self, path):
            self.name, self.data = path.name, path.read_bytes()

        def getvalue(self):
            return self.data

    if "results" not in st.session_state:
        st.session_state["results"] = [state.store_upload([File(p) for p in Path(s).iterdir()]) for s in sources]
    st.session_state["folder"] = str(st.session_state["_uploads"].dir)
    st.session_state["found"] = [c.path for c in state.discover("nqueens7") if c.source == "uploaded"]


def test_uploads_are_deleted_when_no_longer_needed(base, tmp_path, monkeypatch, cache):
    """A session keeps its last UPLOADS_KEPT uploads, a rejected one is deleted at once, the session's folder
    goes with the session, and a dead server's folder is swept at the next upload."""
    from app import state

    root = tmp_path / "uploads"
    monkeypatch.setattr(state, "uploads_root", lambda: root)
    dead = root / "session-999999999-gone"  # a server killed before it could clean up
    (dead / "upload-x").mkdir(parents=True)
    sources = []
    for k in range(state.UPLOADS_KEPT + 1):  # distinct checkpoints: distinct uploads
        sources.append(variant(base, tmp_path / f"v{k}", monkeypatch, card={"steps": k}))
    sources.insert(1, variant(base, tmp_path / "bad", monkeypatch, config={"train": {"seed": 2**70}}))
    at = AppTest.from_function(_upload_script, args=([str(s) for s in sources],), default_timeout=120).run()
    assert not at.exception, [e.message for e in at.exception]
    results = at.session_state["results"]
    assert results[1][0] is None and "seed" in results[1][1]
    stored = [r[0] for r in results if r[0]]
    assert len(stored) == state.UPLOADS_KEPT + 1 and all(e is None for d, e in results if d)
    assert not Path(stored[0]).exists() and all(Path(p).is_dir() for p in stored[1:])  # the oldest went
    assert at.session_state["found"] == stored[1:]
    folder = Path(at.session_state["folder"])
    assert sorted(p.name for p in folder.iterdir()) == sorted(Path(p).name for p in stored[1:])  # no rejected upload
    assert not dead.exists()
    del at
    gc.collect()  # Streamlit drops a closed session's state; its uploads go with it
    assert not folder.exists()


def test_the_train_page_refuses_a_run_past_the_budget(tmp_path, monkeypatch, cache):
    """The Train page accepted any size: now the run's budget is checked before its model is built, and the
    page shows the numbers."""
    from app import training

    monkeypatch.setattr(training, "_JOBS", {})  # this test's jobs only; others see none of them
    at = open_page("train")
    at.text_input(key="tr_extra").input("T=1000000000")
    next(b for b in at.button if "Start training" in b.label).click().run()
    job = training.get(at.session_state["train_job"])
    job.wait(60)
    if job.running:  # never leave a run behind
        job.stop()
    assert job.status == "error" and "BudgetError" in job.error, (job.status, job.error)
    at.run()
    assert not at.exception
    shown = texts(at.error)
    assert "a training step of batch" in shown and "1,000,000,000 transitions" in shown, shown
    assert not (job.out / "model.safetensors").exists()
