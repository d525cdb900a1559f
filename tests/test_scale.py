"""The scale table and `python -m gram scale` / `bench sample` end to end on a tiny trained checkpoint."""
import csv
import json

import pytest
import torch

from conftest import SHIPPED, last_json
from gram.cli import main
from gram.checkpoint import load_checkpoint
from gram.rollout import sample
from gram.scale import scale_table
from gram.tasks import get_task


def test_scale_table_is_nested_and_matches_sample(tiny_checkpoint):
    model, cfg, _ = load_checkpoint(tiny_checkpoint)
    task = get_task(cfg.train.task)
    split = task.split("test", cfg.train.seed).subset(torch.arange(3))
    rows = scale_table(model, task, split, [1, 2, 4], [1, 2], act=True, seed=5, rows_per_batch=8, dtype="fp32")
    assert [(r["depth"], r["width"]) for r in rows] == [(d, n) for d in (1, 2, "act") for n in (1, 2, 4)]
    for d in (1, 2, "act"):
        rs = [r for r in rows if r["depth"] == d]
        for k in ("oracle", "coverage", "distinct"):
            assert all(a[k] <= b[k] for a, b in zip(rs, rs[1:])), (d, k)
        assert all(1 <= r["steps"] <= 2 for r in rs)
    # the deepest column holds exactly the answers `sample` gives with the same seed, batched differently
    samples, _ = sample(model, split.inputs, 4, seed=5, n_sup=2, dtype="fp32")
    valid = task.is_correct(split.inputs.repeat_interleave(4, 0), samples.reshape(12, -1)).float().mean().item()
    assert [r for r in rows if r["depth"] == 2 and r["width"] == 4][0]["mean"] == pytest.approx(valid)


def gram(capsys, *args) -> str:
    """`python -m gram ARGS` in this process (the parser and command end to end, without a second torch
    import); returns stdout."""
    main([str(a) for a in args])
    return capsys.readouterr().out


def test_scale_command_writes_json_csv_html(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "scale"
    stdout = gram(capsys, "scale", "--checkpoint", tiny_checkpoint, "--widths", "1,2,4", "--depths", "1,2", "--act",
                  "--limit", "2", "--out", out)
    meta = last_json(stdout)
    assert meta["inputs"] == 2 and meta["widths"] == [1, 2, 4]
    assert "vote" in stdout.splitlines()[0] and "lprm" in stdout.splitlines()[0]
    table = json.loads((out / "scale.json").read_text())["rows"]
    assert len(table) == 9 and len(list(csv.DictReader(open(out / "scale.csv")))) == 9
    html = (out / "scale.html").read_text()
    assert "plotly" in html.lower() and "accuracy vs depth" in html
    with pytest.raises(SystemExit) as e:
        gram(capsys, "scale", "--checkpoint", tiny_checkpoint, "--widths", "1,x")
    assert e.value.code == 2 and "integers" in capsys.readouterr().err


@pytest.mark.skipif(not (SHIPPED["nqueens8"] / "model.safetensors").is_file(), reason="no shipped checkpoint yet")
def test_scale_on_the_shipped_checkpoint(tmp_path, capsys):
    stdout = gram(capsys, "scale", "--checkpoint", SHIPPED["nqueens8"], "--widths", "1,4", "--depths", "2",
                  "--limit", "2", "--out", tmp_path)
    assert last_json(stdout)["task"] == "nqueens8"


def test_bench_sample_reports_times_and_trace_memory(tiny_checkpoint, capsys):
    res = last_json(gram(capsys, "bench", "sample", "--checkpoint", tiny_checkpoint, "--n", "4", "--transitions", "4",
                         "--reps", "1"))
    assert res["transitions"] == 4 and res["trace_shape_h"][:2] == [4, 4]
    assert res["seconds_N1"] > 0 and res["trace_mb"] > 0
