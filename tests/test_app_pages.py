"""AppTest for every page of GRAM Explorer: it renders without exceptions, its main interactions change what is
shown, and its figures hold the expected traces. Models are tiny checkpoints made in a tmp dir."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from streamlit.testing.v1 import AppTest

from app import testkit
from app.testkit import open_page


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


def clean(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def widget(at: AppTest, kind: str, key: str):
    return next(w for w in getattr(at, kind) if w.key == key)


# --- every page renders --------------------------------------------------------------------------
EXPECTED = {
    "tour": {"tour_puzzle", "tour_steps", "tour_pca", "tour_cov"},
    "recursion": {"rec_view"},
    "trajectories": {"traj_view", "traj_curves"},
    "selection": {"sel_curve", "sel_bars", "sel_values"},
    "coverage": {"cov_curve", "cov_commit"},
    "generation": {"gen_view"},
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
    assert testkit.figures(at)["rec_view"]["layout"]["sliders"][0]["active"] == 2  # the figure opens at that step
    assert widget(at, "number_input", "rec_idx").value == 7


def test_bad_url_values_fall_back_with_a_warning(env):
    at = open_page("trajectories", {"g_seed": "abc", "traj_n": "100000", "g_task": "nope"})
    clean(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "traj_n" in warnings and "g_seed" in warnings and "g_task" in warnings
    assert widget(at, "slider", "traj_n").value == 32


# --- recursion -----------------------------------------------------------------------------------
def titles_of(fig: dict) -> list[str]:
    """Every text a figure (or one of testkit.frames, whose traces hold what changes) shows: its annotations and its
    traces' text points (titles among them)."""
    return [a["text"] for a in fig.get("layout", {}).get("annotations", [])] + \
        [s for t in fig["data"] if isinstance(t.get("text"), list) for s in t["text"]]


def frames_differ(fig: dict, trace: int = 0) -> bool:
    zs = [f["data"][trace].get("z") for f in testkit.frames(fig)]
    return any(z != zs[0] for z in zs[1:])


def test_recursion_steps_in_the_browser(env):
    """One figure carries every record point of the trace as a frame, with its own slider and play button: a
    step redraws in the browser, with no rerun. Frames update the boards, h and the step marker together."""
    at = open_page("recursion", {"rec_depth": "3"})
    clean(at)
    fig = testkit.figures(at)["rec_view"]
    R = 3 * 2  # depth 3 x T = 2 transitions of the tiny recipe
    assert len(fig["frames"]) == R
    slider = fig["layout"]["sliders"][0]
    assert [s["args"][0][0] for s in slider["steps"]] == [f["name"] for f in fig["frames"]]
    assert slider["active"] == R - 1  # opens at the last step
    assert {b["label"].split()[-1] for b in fig["layout"]["updatemenus"][0]["buttons"]} == {"play", "pause"}
    frames = testkit.frames(fig)
    assert all(f["traces"] == frames[0]["traces"] for f in frames)  # the same panels every frame
    assert frames_differ(fig, 0)  # the board's probabilities change with the step
    n_dyn = len(frames[0]["traces"])
    assert frames[0]["data"][n_dyn - 1]["x"] == [0, 0] and frames[-1]["data"][n_dyn - 1]["x"] == [R - 1] * 2
    names = set(testkit.trace_names(fig))
    assert {"LPRM value", "P(halt)", "P(halt), partner"} <= names
    titles = titles_of(frames[0])
    assert any("where h moved" in t for t in titles) and any("where the prior explores" in t for t in titles)


def test_recursion_posterior_beside_the_prior(env):
    at = open_page("recursion", {"rec_src": "random test puzzle", "rec_idx": "0", "rec_depth": "2"})
    clean(at)
    toggle = next(t for t in at.toggle if t.key == "rec_q")
    assert not toggle.disabled
    toggle.set_value(True).run()
    clean(at)
    titles = titles_of(testkit.figures(at)["rec_view"])
    assert any(t.startswith("posterior q") for t in titles) and any("where the answer steered (KL" in t for t in titles), titles


def test_every_figure_is_valid_plotly(env):
    """Every figure is built as plain dicts (no validation at run time): check each page's against Plotly's schema
    here, frames included."""
    import plotly.graph_objects as go

    for page in ("tour", "recursion", "trajectories", "selection", "coverage", "generation"):
        at = open_page(page)
        clean(at)
        figs = testkit.figures(at)
        assert figs, page
        for key, spec in figs.items():
            go.Figure(spec)  # raises on an unknown property or a bad value


def test_figures_draw_with_the_apps_bundle_unless_they_need_more(env):
    """ui.chart draws a figure with app/plot.js (the app's plotly.js bundle, served from app/static) wherever it
    can, and with st.plotly_chart where the figure needs the full bundle (3-D)."""
    from app import ui

    by_plotly_chart = lambda at: {(el.proto.id or "").split("-", 2)[-1] for el in at.get("plotly_chart")}
    at = open_page("recursion")
    assert list(testkit.figures(at)) == ["rec_view"] and not by_plotly_chart(at)
    at = open_page("trajectories")
    assert not by_plotly_chart(at) and {"traj_view", "traj_flow", "traj_curves"} <= set(testkit.figures(at))
    widget(at, "radio", "traj_dims").set_value(3).run()
    assert by_plotly_chart(at) == {"traj_view3"}
    bundle = (Path(ui.__file__).parent.parent / ui.BUNDLE).read_text()  # what the static files serve
    assert ui.TRACES == set(re.findall(r'moduleType:"trace",name:"(\w+)"', bundle))


def test_answer_flow_bands_are_as_thick_as_the_trajectories_along_them():
    from app import figures

    flow = {"nodes": [{"record": 0, "label": "answer 1", "count": 3}, {"record": 0, "label": "not valid yet", "count": 1},
                      {"record": 2, "label": "answer 1", "count": 4}],
            "links": [{"source": 0, "target": 2, "value": 3}, {"source": 1, "target": 2, "value": 1}]}
    fig = figures.flow_bands(flow, ["1.1", "1.2", "2.1"], "answers").spec
    bands = " ".join("|" if v is None else str(v) for v in fig["data"][0]["y"]).split("|")
    ys = [[float(v) for v in b.split()] for b in bands if b.strip()]
    assert [b[len(b) // 2] - b[len(b) // 2 - 1] for b in ys] == [3, 1]  # top edge out, bottom edge back
    assert ys[1][len(ys[1]) // 2 - 1] == ys[0][len(ys[0]) // 2 - 1] + 3  # stacked where they arrive
    bars = {t["fillcolor"]: t for t in fig["data"][1:3]}
    assert set(bars) == {figures.label_color("answer 1"), figures.BAD}
    labels = [text for t in fig["data"][3:] for text in t["text"]]
    assert labels == ["answer 1 (3)", "not valid yet (1)", "answer 1 (4)"]


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
    # the PCA panel's trajectories: one trace per answer, a break (None) after each trajectory
    n_lines = lambda f: sum(t["x"].count(None) for t in f["data"] if t.get("mode") == "lines" and t.get("xaxis") == "x")
    fig = testkit.figures(at)["traj_view"]
    assert n_lines(fig) == 32
    assert fig["frames"] and all(len(f["data"][0]["x"]) == 32 for f in testkit.frames(fig))  # the 32 markers move
    widget(at, "slider", "traj_n").set_value(8).run()
    clean(at)
    fig = testkit.figures(at)["traj_view"]
    assert n_lines(fig) == 8
    assert "variance" in fig["layout"]["xaxis"]["title"]["text"]
    widget(at, "radio", "traj_dims").set_value(3).run()
    clean(at)
    assert "scatter3d" in testkit.trace_types(testkit.figures(at)["traj_view3"])


def test_trajectories_pick_and_branch(env):
    at = open_page("trajectories")
    widget(at, "slider", "traj_n").set_value(4).run()
    widget(at, "number_input", "traj_pick").set_value(3).run()
    clean(at)
    titles = [a["text"] for a in testkit.figures(at)["traj_view"]["layout"]["annotations"]]
    assert any(t.startswith("trajectory 3 ") for t in titles), titles
    widget(at, "slider", "traj_m").set_value(4).run()
    next(b for b in at.button if b.label == "Branch").click().run()
    clean(at)
    fig = testkit.figures(at)["traj_branch_fig"]
    assert sum(fig["data"][0]["y"]) == 4
    # the result belongs to its view: another seed (or puzzle, checkpoint, depth) does not draw it
    widget(at, "number_input", "g_seed").set_value(1).run()
    clean(at)
    assert "traj_branch_fig" not in testkit.figures(at)


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


def test_coverage_draws_the_missed_completions_when_asked(env):
    at = open_page("coverage", {"cov_n": "1"})  # one sample reaches at most one of the preset's completions
    clean(at)
    assert "cov_missed" not in testkit.figures(at)
    widget(at, "toggle", "cov_show_missed").set_value(True).run()
    clean(at)
    assert testkit.figures(at)["cov_missed"]["data"]


def test_generation_steps_in_the_browser(env):
    at = open_page("generation", {"gen_depth": "5"})
    clean(at)
    fig = testkit.figures(at)["gen_view"]
    heat = [t for t in fig["data"] if t["type"] == "heatmap"]
    # the 12 samples' boards tiled into one heat map (a trace each made a step slower), one title each
    assert len(heat) == 1 and sum(v is not None for row in heat[0]["z"] for v in row) == 12 * 49
    titles = next(t for t in fig["data"] if t.get("mode") == "text" and t["text"][0].startswith("#0"))
    assert len(titles["text"]) == 12 and len(set(titles["x"])) == 6  # six boards a row
    assert len(fig["frames"]) == 5 and frames_differ(fig, 0)
    assert {"valid samples", "mean confidence"} <= set(testkit.trace_names(fig))
    assert fig["layout"]["sliders"][0]["currentvalue"]["prefix"] == "after step "
    # the boards share one axis pair (a subplot each made a step several times slower), the curves have the other
    assert sorted(k for k in fig["layout"] if k.startswith(("xaxis", "yaxis"))) == ["xaxis", "xaxis2", "yaxis", "yaxis2"]


def test_frames_carry_only_what_changes(env):
    """A frame's traces hold the keys that differ from the drawn traces in some frame; the rest (a board's cell
    positions, colour scales) stays with the drawn trace, which Plotly merges each frame into. After the first,
    a frame holds only what changed since the frame before, on top of which (its baseframe) Plotly computes it."""
    at = open_page("recursion", {"rec_depth": "4"})
    clean(at)
    fig = testkit.figures(at)["rec_view"]
    carried, frames = fig["frames"], testkit.frames(fig)
    for k, j in enumerate(frames[0]["traces"]):
        drawn = fig["data"][j]
        keys = set(frames[0]["data"][k])
        assert all(set(f["data"][k]) == keys for f in frames) and keys <= set(drawn) | {"type"}
        unchanged = {key for key in drawn if all(f["data"][k].get(key, drawn[key]) == drawn[key] for f in frames)}
        assert not (unchanged & keys) - {"type"}
    board = frames[0]["traces"][0]  # the prior's board: its probabilities change, its grid does not
    assert "z" in frames[0]["data"][0] and "colorscale" not in frames[0]["data"][0] and fig["data"][board]["colorscale"]
    for before, f, shown, was in zip(carried, carried[1:], frames[1:], frames):
        assert f["baseframe"] == before["name"]
        for j, d in zip(f["traces"], f["data"]):
            k = shown["traces"].index(j)
            assert all(key == "type" or v != was["data"][k].get(key) for key, v in d.items())


def test_long_traces_keep_at_most_max_frames():
    from app.stepfig import MAX_FRAMES, frame_steps

    assert frame_steps(10) == list(range(10))
    steps = frame_steps(768)
    assert len(steps) <= MAX_FRAMES + 1 and steps[0] == 0 and steps[-1] == 767


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
    grid = testkit.figures(at)["gen_view"]
    assert len([t for t in grid["data"] if t["type"] == "image"]) == 12  # a Sudoku board's digits: one image each
    assert {"valid samples", "mean confidence"} <= set(testkit.trace_names(grid))


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


def test_lesson_link_hides_the_sidebar_and_keeps_its_flag(env):
    at = open_page("recursion", {"g_lesson": "true"})
    clean(at)
    assert any("stSidebar" in h.proto.body and "display: none" in h.proto.body for h in at.get("html"))
    assert at.query_params["g_lesson"] in ("True", ["True"], "true", ["true"])


# --- the guidance, drawn per step (Recursion) ---------------------------------------------------------
def guide_curves(fig: dict) -> dict:
    """name -> y of the guidance panel's per-step curves (on x7; the step marker has no name)."""
    return {t["name"]: t["y"] for t in fig["data"] if t.get("xaxis") == "x7" and t.get("name")}


def test_recursion_draws_the_guidance_per_step_and_the_noise_scale_moves_it(env):
    at = open_page("recursion", {"rec_depth": "3"})
    clean(at)
    fig = testkit.figures(at)["rec_view"]
    curves = guide_curves(fig)
    assert set(curves) == {"σ_p", "|μ_p|", "|ε|"} and all(len(y) == 6 for y in curves.values())
    # the panel's title carries the values of the shown step, frame by frame
    frames = testkit.frames(fig)
    values = lambda f: next(t for t in titles_of(f) if "|ε|" in t)
    last = values(frames[-1])
    shown = float(re.search(r"\|ε\| ([0-9.e+-]+)", last).group(1))  # 3 significant digits; the curve 3 decimals
    assert abs(shown - curves["|ε|"][-1]) <= 1e-3 and "σ_p" in last
    assert values(frames[0]) != last or curves["|ε|"][0] == curves["|ε|"][-1]
    # eps = mu_p + sigma_p * scale * z: at scale 0 the noise drawn is its mean; at 2 it is larger
    widget(at, "slider", "rec_temp").set_value(0.0).run()
    cold = guide_curves(testkit.figures(at)["rec_view"])
    assert np.allclose(cold["|ε|"], cold["|μ_p|"], atol=2e-3)
    widget(at, "slider", "rec_temp").set_value(2.0).run()
    clean(at)
    hot = guide_curves(testkit.figures(at)["rec_view"])
    assert np.mean(hot["|ε|"]) > np.mean(cold["|ε|"])


def test_recursion_posterior_adds_its_total_kl_per_step(env, downloads):
    at = open_page("recursion", {"rec_src": "random test puzzle", "rec_idx": "0", "rec_depth": "2", "rec_q": "true"})
    clean(at)
    fig = testkit.figures(at)["rec_view"]
    kl = next(t for t in fig["data"] if t.get("name") == "total KL(q || p)")
    assert kl["yaxis"] == "y8" and fig["layout"]["yaxis8"]["overlaying"] == "y7" and len(kl["y"]) == 4
    # the total is the sum over positions of the per-cell map the guidance panel shows
    cells = [r for r in csv_rows(downloads, "per-step-and-position")]
    per_step = {}
    for r in cells:
        per_step[r["step"]] = per_step.get(r["step"], 0.0) + float(r["kl"])
    assert np.allclose(list(per_step.values()), kl["y"], rtol=1e-3, atol=1e-3)
    assert any("total KL(q || p)" in t for t in titles_of(fig))


def test_deterministic_recursion_says_it_has_no_guidance(env):
    at = open_page("recursion", {"g_mode": "deterministic", "rec_depth": "2"})
    clean(at)
    fig = testkit.figures(at)["rec_view"]
    assert guide_curves(fig) == {}
    assert any(a["text"] == "no guidance noise in this mode" for a in fig["layout"]["annotations"])


# --- for teaching: figures as PNG or SVG, the numbers as JSON and CSV, the lesson link -----------------------
def test_every_figure_saves_as_png_or_svg(env):
    at = open_page("recursion", {"rec_depth": "2"})
    clean(at)
    configs = testkit.configs(at)
    assert configs and all(c["toImageButtonOptions"]["format"] == "png" for c in configs.values())
    assert configs["rec_view"]["toImageButtonOptions"]["filename"] == "gram-rec_view"
    at.segmented_control(key="g_fig").set_value("svg").run()
    clean(at)
    configs = testkit.configs(at)
    assert all(c["toImageButtonOptions"]["format"] == "svg" for c in configs.values()), configs
    assert at.query_params["g_fig"] in ("svg", ["svg"])  # a shared link keeps the choice
    at = open_page("tour", {"g_fig": "svg"})  # and every page honours it
    assert {c["toImageButtonOptions"]["format"] for c in testkit.configs(at).values()} == {"svg"}


@pytest.fixture
def downloads(monkeypatch) -> dict:
    """file name -> (bytes, MIME type) of every download button the pages draw. Their files are made on a click
    (a deferred callable the media file manager keeps): made here as a click would."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    seen = {}
    original = MediaFileManager.add_deferred

    def record(self, make, mimetype, coordinates, file_name=None, **kw):
        data = make()
        seen[file_name] = (data.encode() if isinstance(data, str) else data, mimetype)
        return original(self, make, mimetype, coordinates, file_name, **kw)

    monkeypatch.setattr(MediaFileManager, "add_deferred", record)
    return seen


def csv_rows(downloads: dict, table: str) -> list[dict]:
    import csv
    import io

    name = next(n for n in downloads if n.endswith(f"-{table}.csv"))
    data, mime = downloads[name]
    assert mime == "text/csv"
    return list(csv.DictReader(io.StringIO(data.decode())))


NUMBERS = {  # page -> its tables
    "recursion": ("per-step", "per-step-and-position"),
    "trajectories": ("per-step", "per-trajectory", "per-step-and-trajectory", "per-step-and-cell"),
    "selection": ("per-width", "per-puzzle"),
    "coverage": ("per-width", "per-sample"),
    "generation": ("per-step", "per-sample"),
}


@pytest.mark.parametrize("page", list(NUMBERS))
def test_views_offer_their_numbers_as_json_and_csv(env, downloads, page):
    import json

    at = open_page(page)
    clean(at)
    jsons = [n for n in downloads if n.endswith(".json")]
    assert len(jsons) == 1, list(downloads)
    doc = json.loads(downloads[jsons[0]][0])
    for table in NUMBERS[page]:
        rows = csv_rows(downloads, table)
        assert rows, table
        columns = doc[table.replace("-", " ")]  # the JSON holds the same table, as columns
        assert list(rows[0]) == list(columns) and len(rows) == len(next(iter(columns.values())))


def test_the_numbers_are_the_ones_drawn(env, downloads):
    """Recursion's per-step CSV holds what its figure draws: the guidance curves, the heads, one row per step."""
    at = open_page("recursion", {"rec_depth": "3"})
    clean(at)
    fig = testkit.figures(at)["rec_view"]
    rows = csv_rows(downloads, "per-step")
    assert [r["step"] for r in rows] == [f["name"] for f in fig["frames"]]
    col = lambda k: [float(r[k]) for r in rows]
    curves = guide_curves(fig)
    assert np.allclose(col("sigma_p"), curves["σ_p"], atol=1e-3)
    assert np.allclose(col("abs_eps"), curves["|ε|"], atol=1e-3)
    assert np.allclose(col("p_halt"), next(t["y"] for t in fig["data"] if t.get("name") == "P(halt)"), atol=1e-3)
    assert {r["valid"] for r in rows} <= {"true", "false"}
    cells = csv_rows(downloads, "per-step-and-position")
    assert len(cells) == len(rows) * len({r["position"] for r in cells})


def test_a_blank_image_is_a_white_canvas():
    """Generation and the Tour draw MNIST's blank input (all PAD) before any pixel is on."""
    from app import figures
    from gram.tasks import get_task

    task = get_task("mnist")
    assert np.max(figures.board_traces(task, task.empty_input().numpy())[0]["z"]) == 0
    on = task.empty_input().numpy().copy()
    on[:3] = 2
    assert np.asarray(figures.board_traces(task, on)[0]["z"]).sum() == 3


def test_attacking_queens_are_joined_along_the_line_they_attack_on():
    from app import figures
    from gram.tasks import get_task

    task = get_task("nqueens7")
    pred = np.ones(49, dtype=np.int64)
    for r, c in ((0, 0), (2, 2), (0, 5), (6, 3)):  # (0,0)-(2,2) share a diagonal, (0,0)-(0,5) a row
        pred[r * 7 + c] = 2
    lines = figures.board_traces(task, pred, None, np.ones(49))[2]
    assert lines["mode"] == "lines" and lines["line"]["color"] == figures.CLASH
    segs = {tuple(lines["x"][k:k + 2]) + tuple(lines["y"][k:k + 2]) for k in range(0, len(lines["x"]), 3)}
    assert segs == {(0, 5, 0, 0), (0, 2, 0, 2)}  # (x0, x1, y0, y1): the row, the diagonal; (6, 3) is safe
    pred[[0, 5, 16, 45]] = 1
    assert figures.board_traces(task, pred, None, np.ones(49))[2]["x"] == []  # still one trace: frames replace it


def test_commitment_dots_count_the_trajectories_they_stand_for():
    from app import figures

    fig = figures.commit_strip(np.array([0, 2, 2, 2]), ["solution 1", "solution 2", "solution 2", "invalid"],
                               ["1", "2", "3"], "when")
    t = fig.spec["data"][0]
    assert list(zip(t["y"], t["x"])) == [("solution 1", 0), ("solution 2", 2), ("invalid", 2)]
    size = t["marker"]["size"]
    assert [c[0] for c in t["customdata"]] == [1, 2, 1] and size[1] > size[0] == size[2]
    assert t["customdata"][1][2] == "1, 2"  # which trajectories, for the hover


def test_csv_text_writes_columns_as_rows():
    from app import ui

    text = ui.csv_text({"step": ["1.1", "1.2"], "ok": np.array([True, False]),
                        "v": np.array([0.123456789, 2.0], dtype=np.float32), "answer": ["a,b", "c"]})
    assert text == 'step,ok,v,answer\n1.1,true,0.12346,"a,b"\n1.2,false,2.0,c\n'
    with pytest.raises(ValueError, match="different lengths"):
        ui.csv_text({"a": [1, 2], "b": [1]})


ADVANCED = {  # page -> (kind, key) of the controls a lesson link hides, and those it keeps
    "recursion": ({("slider", "rec_temp"), ("toggle", "rec_q")}, {("slider", "rec_depth")}),
    "trajectories": ({("slider", "traj_temp"), ("slider", "traj_depth"), ("radio", "traj_dims"), ("slider", "traj_m"),
                      ("slider", "traj_at")}, {("slider", "traj_n")}),
    "selection": ({("select_slider", "sel_p"), ("slider", "sel_depth")}, {("select_slider", "sel_n")}),
    "coverage": ({("slider", "cov_temp")}, {("select_slider", "cov_n")}),
    "generation": ({("slider", "gen_depth")}, {("select_slider", "gen_n")}),
}


def keys_of(at: AppTest, kind: str) -> set:
    return {w.key for w in getattr(at, kind)}


@pytest.mark.parametrize("page", list(ADVANCED))
def test_a_lesson_link_hides_the_advanced_controls(env, page):
    hidden, kept = ADVANCED[page]
    at = open_page(page)
    clean(at)
    for kind, key in hidden | kept:
        assert key in keys_of(at, kind), (kind, key)  # the full page has them all
    assert "g_fig" in keys_of(at, "button_group")
    at = open_page(page, {"g_lesson": "true"})
    clean(at)
    for kind, key in hidden:
        assert key not in keys_of(at, kind), (kind, key)
    for kind, key in kept:
        assert key in keys_of(at, kind), (kind, key)
    assert "g_fig" not in keys_of(at, "button_group")
    assert testkit.figures(at)  # the view itself is there


def test_a_lesson_link_sets_what_it_hides(env):
    """The hidden controls keep the link's values: a lesson on the noise scale is a link with ?rec_temp=0."""
    at = open_page("recursion", {"g_lesson": "true", "rec_temp": "0", "rec_depth": "2"})
    clean(at)
    curves = guide_curves(testkit.figures(at)["rec_view"])
    assert np.allclose(curves["|ε|"], curves["|μ_p|"], atol=2e-3)
    assert at.query_params["rec_temp"] in ("0.0", ["0.0"])


# --- the Tour's story ------------------------------------------------------------------------------------
STORY_TASKS = ("nqueens7", "nqueens8", "nqueens10", "graph_coloring8", "sudoku", "sudoku_uncond", "mnist")
INTERACTION = re.compile(r"\b(click|press|drag|pick|watch|scrub|choose|select|try|move the)\b", re.I)


@pytest.mark.parametrize("name", STORY_TASKS)
def test_the_tour_tells_each_tasks_own_story(name):
    from app import ui
    from gram.tasks import get_task

    task = get_task(name)
    n_known = None if task.unconditional else 7 if task.multi_solution else 1
    for mode in ("gram", "deterministic", "noise", "flat"):
        story = ui.tour_story(task, mode, n_known, 16)
        assert len(story) == 5
        assert task.rules in story[0][1] and f"**{name}**" in story[0][1]
        text = " ".join(f"{t} {x}" for t, x in story).replace(task.rules, "")  # what the Tour adds to the rules
        assert not INTERACTION.findall(text), (mode, text)  # a story, read without touching anything
        assert ("queen" in text.lower()) == name.startswith("nqueens")  # no N-Queens rules on other tasks
        assert ("digit" in text) == (name == "mnist")
        assert ("learned prior" in text) == (mode == "gram")
        assert ("adds no noise" in text) == (mode in ("deterministic", "flat"))
        assert ("fast state" in text) == (mode != "flat")
    title = lambda n, k=None: ui.tour_story(task, "gram", k if k is not None else n_known, 16)[n][0]
    if task.unconditional:
        assert title(0) == "Generating from nothing" and title(3) == "More samples, more variety"
    elif task.multi_solution:
        assert title(0) == "A puzzle with many answers"
        assert "7 valid answers" in ui.tour_story(task, "gram", 7, 16)[0][1]
        assert title(0, 1) == "A puzzle with one answer"  # a multi-solution task's puzzle may have one
        assert "several valid answers" in ui.tour_story(task, "gram", None, 16)[0][1]  # a typed one: unknown
    else:
        assert title(0) == "A puzzle with one answer" and title(3) == "More samples, better odds"


@pytest.mark.parametrize("name", ["graph_coloring8", "mnist", "nqueens7"])
def test_the_tour_page_reads_its_story(env, name, tmp_path, monkeypatch):
    """The Tour, without a checkpoint (its figures need one), still tells the whole story of the chosen task."""
    from app import ui
    from gram.tasks import get_task

    empty = tmp_path / "none"
    empty.mkdir()
    monkeypatch.setenv("GRAM_CHECKPOINTS", str(empty))
    at = open_page(None, {"g_task": name})
    assert not at.exception
    task = get_task(name)
    shown = [m.value for m in at.markdown]
    story = ui.tour_story(task, "gram", None, 16)
    assert next(m for m in shown if m.startswith(f"**{name}**. {task.rules}"))
    for k, (title, text) in enumerate(story):
        assert any(m.startswith("### ") for m in shown)
        if k:  # after the first, which counts the puzzle's answers
            assert f"### {title}" in shown and text in shown, title


def test_renamed_colourings_count_as_one_answer(monkeypatch, tmp_path):
    """The shipped graph-colouring model writes one colouring under several colour names: Coverage counts answers
    (Task.canonical), never more than the puzzle has."""
    from conftest import ROOT

    monkeypatch.setenv("GRAM_CHECKPOINTS", str(ROOT / "checkpoints"))
    monkeypatch.setenv("GRAM_APP_RUNS", str(tmp_path / "runs"))
    at = open_page("coverage", {"g_task": "graph_coloring8"})
    clean(at)
    metric = {m.label: m.value for m in at.metric}
    known, found = int(metric["valid completions of this puzzle"]), int(metric["distinct valid answers in 64 samples"])
    assert 1 < found <= known
    curve = testkit.figures(at)["cov_curve"]["data"][0]
    assert max(curve["y"]) == found


def test_generation_offers_the_unconditional_tasks_it_has_checkpoints_for(monkeypatch, tmp_path):
    """Which tasks are unconditional is the tasks' own word (Task.unconditional), not their names."""
    from conftest import ROOT

    monkeypatch.setenv("GRAM_CHECKPOINTS", str(ROOT / "checkpoints"))
    monkeypatch.setenv("GRAM_APP_RUNS", str(tmp_path / "runs"))
    at = open_page("generation", {"g_task": "nqueens7", "gen_depth": "2"})
    clean(at)
    offer = next(i.value for i in at.info if "Unconditional tasks" in i.value)
    assert offer.endswith("Unconditional tasks: sudoku_uncond, mnist.")
    next(b for b in at.button if b.label == "Switch to sudoku_uncond").click().run()
    assert at.session_state["g_task"] == "sudoku_uncond"


def test_an_unconditional_task_has_one_input_the_blank_one(monkeypatch, tmp_path):
    from conftest import ROOT

    monkeypatch.setenv("GRAM_CHECKPOINTS", str(ROOT / "checkpoints"))
    monkeypatch.setenv("GRAM_APP_RUNS", str(tmp_path / "runs"))
    at = open_page("recursion", {"g_task": "mnist", "rec_depth": "2"})
    clean(at)
    assert "rec_src" not in keys_of(at, "button_group")  # no puzzle to pick or type
    assert any("Input: **blank**" in m.value for m in at.markdown)
    assert guide_curves(testkit.figures(at)["rec_view"])  # the digit's guidance, per step


def test_a_blank_inputs_answers_are_counted_not_named_one_by_one(monkeypatch, tmp_path):
    """Unconditional Sudoku: every sample is its own board. Its split's boards are not the answer set ("28 of 64"),
    and the legend names only the invalid and the picked trajectory's answers, under a title that counts them."""
    from conftest import ROOT

    monkeypatch.setenv("GRAM_CHECKPOINTS", str(ROOT / "checkpoints"))
    monkeypatch.setenv("GRAM_APP_RUNS", str(tmp_path / "runs"))
    at = open_page("trajectories", {"g_task": "sudoku_uncond", "traj_n": "16"})
    clean(at)
    distinct = next(m for m in at.metric if m.label == "distinct valid answers")
    assert " of " not in distinct.value
    fig = testkit.figures(at)["traj_view"]
    lines = [t for t in fig["data"] if t.get("mode") == "lines"]
    answers = {t["name"] for t in lines} - {"invalid"}
    assert len(answers) > 8  # else the legend may name them all
    picked = lines[-1]["name"]  # the picked trajectory is drawn last, on top
    assert {t["name"] for t in lines if t["showlegend"]} == {"invalid", picked} & {t["name"] for t in lines}
    assert fig["layout"]["legend"]["title"]["text"].startswith(f"{int(distinct.value)} distinct valid answers")


def test_figures_no_page_opens_on_are_valid_plotly():
    """The Train page's curves and the bars drawn after a click are dicts too: checked against the schema here."""
    import plotly.graph_objects as go

    from app import figures

    history = [{"step": s, "loss": 1 / s, "ce": 0.5 / s, "kl": 0.1, "train_accuracy": 0.5, "train_prior_accuracy": 0.4}
               for s in range(1, 12)] + [{"step": 10, "prior_accuracy": 0.6, "posterior_accuracy": 0.7}]
    go.Figure(figures.training_figure(history).spec)
    go.Figure(figures.bars(["solution 1", "solution 12 (new)", "invalid"], [3, 1, 2], ["#7c3aed"] * 3, "where they end",
                           ytitle="continuations").spec)


def test_sudoku_board_is_one_image_of_its_digits():
    """Sudoku's digits are drawn into one image per board (81 SVG texts redraw slowly); the cells above it hover."""
    import base64
    import io

    from PIL import Image

    from app import figures
    from gram.tasks import get_task

    task = get_task("sudoku")
    x = task.split("test", 0).inputs[0].numpy()
    cells, image = figures.board_traces(task, x, None, x)
    assert cells["type"] == "heatmap" and "confidence" in cells["hovertemplate"] and image["type"] == "image"
    px = figures.DIGIT_PX[False]
    index = np.asarray(Image.open(io.BytesIO(base64.b64decode(image["source"].split(",", 1)[1]))))
    assert index.shape == (9 * px, 9 * px)
    per_shade = 1 + len(figures.DIGIT_COLOURS) * (figures.LEVELS - 1)
    full_given = 1 + 1 * (figures.LEVELS - 1) + figures.LEVELS - 2  # DIGIT_COLOURS[1] at the glyph's full level
    for k in range(81):
        r, c = divmod(k, 9)
        part = (index[r * px:(r + 1) * px - 1, c * px:(c + 1) * px - 1].astype(int) - 1) % per_shade
        assert (part == full_given).any() == (x[k] > 1)  # a given digit is drawn in the given colour, a blank is bare
    small = figures.board_traces(task, x, None, x, small=True)[1]
    assert small["dx"] == pytest.approx(1 / figures.DIGIT_PX[True])


@pytest.mark.parametrize("name", ["nqueens7", "sudoku", "graph_coloring8", "mnist"])
def test_board_galleries_are_valid_plotly_specs(name):
    """figures.Spec skips Plotly's validation in the app: every gallery shape must pass it here."""
    import plotly.graph_objects as go

    from app import figures
    from gram.tasks import get_task

    task = get_task(name)
    x = task.empty_input().numpy() if task.unconditional else task.split("test", 0).inputs[0].numpy()
    for n in (1, 5, 6, 7, 13, 24):
        for ncols in (4, 6):
            spec = figures.board_grid(task, [x] * n, [f"#{k}" for k in range(n)], given=x, ncols=ncols).spec
            go.Figure(spec)
            assert {k for k in spec["layout"] if k.endswith("axis")} == {"xaxis", "yaxis"}  # one pair for all
    go.Figure(figures.board_editor(task, x).spec)


@pytest.mark.parametrize("name", ["nqueens7", "sudoku", "graph_coloring8", "mnist"])
def test_merged_boards_draw_what_each_board_drew(name):
    """figures.merge_boards: the one heat map holds every board's cells where the board's own heat map drew them and
    nothing between the boards; a joined scatter holds every board's points; images stay one per board."""
    from app import figures
    from gram.tasks import get_task

    task = get_task(name)
    xs = [task.empty_input().numpy()] * 5 if task.unconditional else [x.numpy() for x in task.split("test", 0).inputs[:5]]
    S = len(xs[0])
    grid = figures.Mosaic({}, len(xs), 3, figures.board_size(task, S), [0, 1], [0, 1], unit=figures.cell_unit(task))
    boards = [figures.place(figures.board_traces(task, x, None, x, small=True), figures.board_ranges(task, S), grid.box(j))
              for j, x in enumerate(xs)]
    merged = figures.merge_boards(boards)
    images = [t for b in boards for t in b if t["type"] == "image"]
    assert [t for t in merged if t["type"] == "image"] == images
    parts = [t for t in merged if t["type"] != "image"]
    assert len(parts) == len(boards[0]) - len(images) // len(boards)
    for k, m in enumerate(parts):
        own = [[t for t in b if t["type"] != "image"][k] for b in boards]
        if m["type"] == "heatmap":
            drawn = {}
            for t in own:
                for r, row in enumerate(t["z"]):
                    for c, v in enumerate(row):
                        drawn[(round(t["y0"] + r - m["y0"]), round(t["x0"] + c - m["x0"]))] = v
            assert {(r, c): v for r, row in enumerate(m["z"]) for c, v in enumerate(row)
                    if v is not None or (r, c) in drawn} == drawn
        else:
            assert m["x"] == [v for t in own for v in t["x"]] and m["y"] == [v for t in own for v in t["y"]]
