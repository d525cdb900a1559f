"""AppTest for every page of GRAM Explorer: it renders without exceptions, its main interactions change what is
shown, and its figures hold the expected traces. Models are tiny checkpoints made in a tmp dir."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from app import testkit  # noqa: E402

TIMEOUT = 120


@pytest.fixture(scope="module")
def ckroot(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    testkit.make_checkpoint(root / "nqueens7", "nqueens7", "gram")
    testkit.make_checkpoint(root / "nqueens7-deterministic", "nqueens7", "deterministic")
    return root


@pytest.fixture
def env(ckroot, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAM_CHECKPOINTS", str(ckroot))
    monkeypatch.setenv("GRAM_APP_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("GRAM_APP_QUICK", ",".join(testkit.TINY))
    return ckroot


def open_page(page: str | None = None, params: dict | None = None) -> AppTest:
    at = AppTest.from_file(testkit.MAIN, default_timeout=TIMEOUT)
    if params:
        at.query_params.update(params)
    if page:  # open the page directly, as a shared link /<page>?... does
        at.switch_page(f"../pages/{page}.py")
    return at.run()


def clean(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def widget(at: AppTest, kind: str, key: str):
    return next(w for w in getattr(at, kind) if w.key == key)


# --- every page renders --------------------------------------------------------------------------
EXPECTED = {
    "tour": {"tour_puzzle", "tour_steps", "tour_pca", "tour_cov"},
    "recursion": {"rec_board", "rec_board_other", "rec_h", "rec_dh", "rec_lines"},
    "trajectories": {"traj_pca", "traj_board", "traj_spread", "traj_distinct"},
    "selection": {"sel_curve", "sel_bars", "sel_values"},
    "coverage": {"cov_curve"},
    "generation": {"gen_grid", "gen_quality", "gen_diversity", "gen_anim"},
    "train": set(),
}


@pytest.mark.parametrize("page", list(EXPECTED))
def test_page_renders_with_figures(env, page):
    at = open_page(None if page == "tour" else page)
    clean(at)
    figs = testkit.figures(at)
    assert EXPECTED[page] <= set(figs), sorted(figs)
    for key in EXPECTED[page]:
        assert figs[key]["data"], key  # every figure holds traces


def test_sidebar_lists_checkpoints_and_binds_url(env):
    at = open_page()
    ck = widget(at, "selectbox", "g_ckpt")
    assert ck.options and "nqueens7" in ck.value
    assert at.query_params["g_task"] == ["nqueens7"] or at.query_params["g_task"] == "nqueens7"
    widget(at, "selectbox", "g_mode").set_value("deterministic").run()
    clean(at)
    assert "deterministic" in widget(at, "selectbox", "g_ckpt").value


def test_url_reopens_the_same_view(env):
    at = open_page("recursion", {"g_seed": "5", "rec_step": "2", "rec_depth": "4", "rec_src": "random test puzzle",
                                 "rec_idx": "7"})
    clean(at)
    assert widget(at, "number_input", "g_seed").value == 5
    assert widget(at, "select_slider", "rec_step").value == 2
    assert widget(at, "number_input", "rec_idx").value == 7


def test_bad_url_values_fall_back_with_a_warning(env):
    at = open_page("trajectories", {"g_seed": "abc", "traj_n": "100000", "g_task": "nope"})
    clean(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "traj_n" in warnings and "g_seed" in warnings and "g_task" in warnings
    assert widget(at, "slider", "traj_n").value == 32


# --- recursion -----------------------------------------------------------------------------------
def test_recursion_scrubber_changes_the_figures(env):
    at = open_page("recursion")
    before = testkit.figures(at)
    lines = before["rec_lines"]
    assert {"LPRM value", "P(halt)"} <= set(testkit.trace_names(lines))
    widget(at, "select_slider", "rec_step").set_value(0).run()
    clean(at)
    after = testkit.figures(at)
    assert after["rec_h"]["data"][0]["z"] != before["rec_h"]["data"][0]["z"]
    assert after["rec_board"]["data"][0]["z"] != before["rec_board"]["data"][0]["z"]
    assert "z0" in after["rec_dh"]["layout"]["title"]["text"]


def test_recursion_play_advances(env):
    at = open_page("recursion")
    widget(at, "select_slider", "rec_step").set_value(0).run()
    widget(at, "button", "rec_play_btn").click().run()
    clean(at)
    assert at.session_state["rec_playing"] is True
    at.run()  # a fragment tick: the scrubber moves on
    assert widget(at, "select_slider", "rec_step").value >= 1
    widget(at, "button", "rec_play_btn").click().run()
    assert at.session_state["rec_playing"] is False


def test_malformed_typed_puzzle_is_an_error_not_a_traceback(env):
    at = open_page("recursion")
    at.segmented_control(key="rec_src").set_value("type one").run()
    at.text_area(key="rec_text").input("Q..\nQQ").run()
    assert not at.exception
    assert any("does not parse" in e.value for e in at.error)
    at.text_area(key="rec_text").input("Q....../..Q..../......./......./......./......./.......").run()
    clean(at)


# --- trajectories --------------------------------------------------------------------------------
def test_trajectories_width_and_projection(env):
    at = open_page("trajectories")
    n_lines = lambda f: sum(1 for t in f["data"] if t.get("mode") == "lines")
    assert n_lines(testkit.figures(at)["traj_pca"]) == 32
    widget(at, "slider", "traj_n").set_value(8).run()
    clean(at)
    fig = testkit.figures(at)["traj_pca"]
    assert n_lines(fig) == 8
    assert "variance" in fig["layout"]["xaxis"]["title"]["text"]
    widget(at, "radio", "traj_dims").set_value(3).run()
    clean(at)
    assert "scatter3d" in testkit.trace_types(testkit.figures(at)["traj_pca3"])


def test_trajectories_pick_and_branch(env):
    at = open_page("trajectories")
    widget(at, "slider", "traj_n").set_value(4).run()
    widget(at, "number_input", "traj_pick").set_value(3).run()
    clean(at)
    assert any("Trajectory **3**" in m.value for m in at.markdown)
    widget(at, "slider", "traj_m").set_value(4).run()
    next(b for b in at.button if b.label == "Branch").click().run()
    clean(at)
    fig = testkit.figures(at)["traj_branch_fig"]
    assert sum(fig["data"][0]["y"]) == 4


# --- selection, coverage, generation -------------------------------------------------------------
def test_selection_curves_and_puzzle(env):
    at = open_page("selection")
    curve = testkit.figures(at)["sel_curve"]
    assert {"majority vote", "LPRM best-of-N"} <= set(testkit.trace_names(curve))
    assert curve["data"][0]["x"] == [1, 2, 4, 8, 16]
    widget(at, "select_slider", "sel_n").set_value(4).run()
    clean(at)
    assert testkit.figures(at)["sel_curve"]["data"][0]["x"] == [1, 2, 4]
    box = widget(at, "selectbox", "sel_puzzle")
    other = next(o for o in box.options if o != box.value)
    box.set_value(int(other.split()[1]) if isinstance(other, str) else other).run()
    clean(at)


def test_coverage_compares_gram_and_deterministic(env):
    at = open_page("coverage")
    curve = testkit.figures(at)["cov_curve"]
    assert {"gram", "deterministic"} <= set(testkit.trace_names(curve))
    widget(at, "select_slider", "cov_n").set_value(8).run()
    clean(at)
    assert testkit.figures(at)["cov_curve"]["data"][0]["x"][-1] == 8


def test_generation_grid_follows_the_step(env):
    at = open_page("generation")
    before = testkit.figures(at)["gen_grid"]
    assert len([t for t in before["data"] if t["type"] == "heatmap"]) == 12
    assert len(testkit.figures(at)["gen_anim"]["frames"]) == 16
    widget(at, "select_slider", "gen_step").set_value(0).run()
    clean(at)
    after = testkit.figures(at)["gen_grid"]
    assert "after 1 supervision" in after["layout"]["title"]["text"]


# --- nothing breaks in front of the user ---------------------------------------------------------
def test_missing_checkpoint_offers_one_click_training(env, tmp_path, monkeypatch):
    empty = tmp_path / "none"
    empty.mkdir()
    monkeypatch.setenv("GRAM_CHECKPOINTS", str(empty))
    at = open_page("recursion")
    assert not at.exception
    assert any("No GRAM" in m.value for m in at.markdown)
    at.button(key="quick_train").click().run()
    assert not at.exception
    from app import training
    job = training.get(at.session_state["train_job"])
    job.wait(120)
    assert job.status == "done", job.error
    assert (Path(job.out) / "model.safetensors").is_file()


def test_width_too_large_is_a_clear_error(env):
    from app import compute
    from gram.checkpoint import load_config
    cfg = load_config(env / "nqueens7")
    with pytest.raises(compute.UserError, match="out of range"):
        compute.check_width(cfg, 10_000, 8)
    cfg.model.D = 4096
    with pytest.raises(compute.UserError, match="GB"):
        compute.check_width(cfg, 128, 48)


def test_unconditional_generation_starts_from_a_blank_input(env, tmp_path, monkeypatch):
    from gram.tasks import task_names
    if "sudoku_uncond" not in task_names():
        pytest.skip("no unconditional task installed")
    root = tmp_path / "ck"
    testkit.make_checkpoint(root / "sudoku_uncond", "sudoku_uncond", "gram")
    monkeypatch.setenv("GRAM_CHECKPOINTS", str(root))
    at = open_page("generation", {"g_task": "sudoku_uncond"})
    clean(at)
    assert any("blank" in m.value for m in at.markdown)
    grid = testkit.figures(at)["gen_grid"]
    assert len([t for t in grid["data"] if t["type"] == "heatmap"]) == 12
    assert {"valid samples", "mean confidence"} <= set(testkit.trace_names(testkit.figures(at)["gen_quality"]))


def test_selection_votes_count_answers_not_colour_names(env):
    """Graph colouring: picks and curves read the batch's canonical `answers`, so two namings of one colouring
    are one answer with two votes; the page renders on it."""
    import numpy as np

    from app import compute
    raw = np.array([[[5, 5], [5, 6], [6, 5]]])  # three distinct namings; samples 1 and 2 are one colouring
    answers = np.array([[[0, 0], [0, 1], [0, 1]]])
    b = {"samples": raw, "answers": answers, "values": np.zeros((1, 3)), "valid": np.array([[False, True, True]]),
         "n_targets": np.array([2])}
    assert compute.picks(b)[0][0] == 1  # on the raw samples every one has one vote and the first (invalid) wins
    assert compute.selection_curves(b, [3])["vote"] == [1.0]
    clean(open_page("selection", {"g_task": "graph_coloring8"}))


def test_sidebar_accuracy_prefers_the_cards_test_evaluation():
    from app.state import card_accuracy

    held_out = {"held_out_prior_accuracy_1_sample": 0.0}
    tested = {**held_out, "test_64_samples": {"samples": 64, "accuracy": 0.922, "n_sup": 256}}
    assert card_accuracy({"metrics": tested}) == ("test accuracy, depth 256", "92%")
    assert card_accuracy({"metrics": held_out}) == ("held-out accuracy, 1 sample", "0%")
    assert card_accuracy({"metrics": "junk"}) is None and card_accuracy({}) is None
