"""AppTest for the Train page (background thread, live curves, stop/resume, the saved checkpoint in the
sidebar) and for uploads (bad files, another task's checkpoint, a good one)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from app import testkit, training
from app.testkit import open_page


@pytest.fixture(scope="module")
def ckroot(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    testkit.make_checkpoint(root / "nqueens7", "nqueens7", "gram")
    testkit.make_checkpoint(root / "other" / "nqueens8", "nqueens8", "gram")
    return root


@pytest.fixture
def env(ckroot, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAM_CHECKPOINTS", str(ckroot))
    monkeypatch.setenv("GRAM_APP_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(training, "_JOBS", {})  # the server's jobs are per process: no other test's run shows
    return ckroot


def fill_tiny(at, steps=3):
    task = at.selectbox(key="tr_task").value
    at.selectbox(key=f"tr_size_{task}").set_value("tiny (D=32, 1 layer)")
    at.number_input(key=f"tr_steps_{task}").set_value(steps)
    at.number_input(key=f"tr_batch_{task}").set_value(8)
    at.text_input(key="tr_extra").input("n_sup=2, eval_samples=8")


def test_train_form_starts_from_the_tasks_recipe(env, monkeypatch):
    """The form shows the chosen task's recipe and passes on only what the user changed, so it trains what
    one-click training trains."""
    from gram.recipes import default_config

    at = open_page("train")
    at.selectbox(key="tr_task").set_value("graph_coloring8").run()
    assert not at.exception
    recipe = default_config("graph_coloring8")
    assert at.number_input(key="tr_beta_graph_coloring8").value == recipe.train.beta == 12.0
    assert at.number_input(key="tr_lr_graph_coloring8").value == recipe.train.lr
    started = []
    monkeypatch.setattr(training, "start", lambda cfg, out, name: started.append(cfg))
    at.number_input(key="tr_steps_graph_coloring8").set_value(5)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and not at.error
    cfg = started[0]
    assert (cfg.train.beta, cfg.train.lr, cfg.train.batch, cfg.train.steps) == (12.0, recipe.train.lr, recipe.train.batch, 5)
    assert cfg.model.D == recipe.model.D


def test_train_runs_in_background_and_saves_a_checkpoint(env):
    at = open_page("train")
    assert not at.exception
    fill_tiny(at)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and not at.error
    name = at.session_state["train_job"]
    job = training.get(name)
    job.wait(120)
    assert job.status == "done", job.error
    at.run()
    assert not at.exception
    fig = testkit.figures(at)["train_curves"]
    names = set(testkit.trace_names(fig))
    assert {"loss", "true KL", "train acc (posterior)", "held-out prior acc", "held-out posterior acc"} <= names
    assert any("done" in p.proto.text for p in at.get("progress"))
    # the run is a checkpoint in the sidebar now
    opts = at.selectbox(key="g_ckpt").options
    assert any(name in o for o in opts), opts
    # open it in Recursion
    next(b for b in at.button if b.key == "train_open").click().run()
    assert not at.exception
    assert name in at.selectbox(key="g_ckpt").value


def test_stop_and_resume(env):
    at = open_page("train")
    fill_tiny(at, steps=100_000)
    next(b for b in at.button if b.label == "Start training").click().run()
    name = at.session_state["train_job"]
    job = training.get(name)
    deadline = time.time() + 60
    while job.step < 2 and time.time() < deadline:
        time.sleep(0.1)
    at.run()
    at.button(key="train_stop").click().run()
    job.wait(60)
    assert job.status == "stopped", job.status
    stopped_at = job.step
    at.run()
    at.number_input(key="train_more").set_value(stopped_at + 2)
    at.button(key="train_resume").click().run()
    assert not at.exception
    job2 = training.get(name)
    job2.wait(60)
    assert job2.status == "done", job2.error
    assert job2.step == stopped_at + 2


def test_bad_settings_are_a_message(env):
    at = open_page("train")
    at.text_input(key="tr_extra").input("no_such_key=3")
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception
    assert any("Cannot start" in e.value for e in at.error)


# --- uploads ---------------------------------------------------------------------------------------
def _files(d: Path, names=("model.safetensors", "config.json", "card.json")):
    return [(n, (d / n).read_bytes(), "application/octet-stream") for n in names]


def test_upload_incomplete_or_corrupt_is_an_error(env):
    at = open_page()
    at.file_uploader(key="upload").set_value(_files(env / "nqueens7", ("config.json",))).run()
    assert not at.exception
    assert any("missing" in e.value for e in at.error)
    files = _files(env / "nqueens7")
    files[0] = ("model.safetensors", b"\x80\x02 not safetensors at all", "application/octet-stream")
    at.file_uploader(key="upload").set_value(files).run()
    assert not at.exception
    assert any("not a usable checkpoint" in e.value for e in at.error)


def test_upload_for_another_task_is_named(env):
    at = open_page()
    at.file_uploader(key="upload").set_value(_files(env / "other" / "nqueens8")).run()
    assert not at.exception
    assert any("trained for task 'nqueens8'" in e.value for e in at.error)
    next(b for b in at.button if b.label == "Switch to nqueens8").click().run()
    assert not at.exception
    assert at.selectbox(key="g_task").value == "nqueens8"
    assert "uploaded" in at.selectbox(key="g_ckpt").format_func(at.selectbox(key="g_ckpt").value) or \
        "upload" in at.selectbox(key="g_ckpt").value


def test_good_upload_becomes_selectable(env):
    at = open_page("recursion")
    at.file_uploader(key="upload").set_value(_files(env / "nqueens7")).run()
    assert not at.exception and not at.error
    opts = at.selectbox(key="g_ckpt").options
    assert any("upload" in o for o in opts), opts
