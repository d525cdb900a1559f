"""Checkpoints: a round trip, and every bad checkpoint refused with a CheckpointError that names the problem."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from gram.checkpoint import CheckpointError, load_checkpoint, read_tensors, save_checkpoint
from gram.config import Config
from gram.rollout import sample
from gram.tasks import get_task


def test_round_trip(tiny_checkpoint, tmp_path):
    model, cfg, card = load_checkpoint(tiny_checkpoint)
    assert not model.training
    assert cfg.train.task == "nqueens8" and cfg.model.D == 32 and cfg.model.seq_len == 64
    assert card["task"] == "nqueens8" and card["mode"] == "gram" and card["steps"] == 4
    for key in ("data", "wall_seconds", "device", "parameters", "metrics"):
        assert key in card
    assert card["parameters"] == sum(p.numel() for p in model.parameters())
    saved = load_file(str(tiny_checkpoint / "model.safetensors"))
    sd = model.state_dict()
    assert set(saved) == set(sd) and all(torch.equal(saved[k], sd[k]) for k in sd)
    # save again, load again: the same weights, config, card and the same samples
    save_checkpoint(tmp_path / "again", model, cfg, card)
    model2, cfg2, card2 = load_checkpoint(tmp_path / "again")
    assert cfg2.to_dict() == cfg.to_dict() and card2 == card
    assert all(torch.equal(v, model2.state_dict()[k]) for k, v in sd.items())
    x = get_task("nqueens8").split("test").inputs[:3]
    a, va = sample(model, x, 2, seed=5, n_sup=2)
    b, vb = sample(model2, x, 2, seed=5, n_sup=2)
    assert torch.equal(a, b) and torch.equal(va, vb)
    assert not list(tmp_path.glob("again/*.tmp"))  # atomic writes leave nothing behind


def test_checkpoint_holds_z0(tiny_checkpoint):
    saved = load_file(str(tiny_checkpoint / "model.safetensors"))
    assert saved["h0"].shape == (32,) and saved["l0"].shape == (32,)


def tensors_of(path) -> dict:
    """The tensors of a safetensors file, copied out of the memory map (the file is about to be overwritten)."""
    return {k: v.clone() for k, v in load_file(str(path)).items()}


def refused(d, *words):
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(d)
    msg = str(e.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert "\n" not in msg
    return msg


# --- files missing -------------------------------------------------------------------------------------------
def test_missing_directory(tmp_path):
    refused(tmp_path / "nope", "nope", "not a checkpoint directory")


def test_a_file_not_a_directory(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    refused(f, "not a checkpoint directory")


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "card.json"])
def test_missing_file(tiny_copy, name):
    (tiny_copy / name).unlink()
    refused(tiny_copy, name, "missing")


# --- bad weights -------------------------------------------------------------------------------------------
def test_truncated_safetensors(tiny_copy):
    p = tiny_copy / "model.safetensors"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    refused(tiny_copy, "model.safetensors", "not a readable safetensors file")


def test_truncated_header(tiny_copy):
    p = tiny_copy / "model.safetensors"
    p.write_bytes(p.read_bytes()[:20])
    refused(tiny_copy, "model.safetensors", "safetensors")


def test_empty_safetensors(tiny_copy):
    (tiny_copy / "model.safetensors").write_bytes(b"")
    refused(tiny_copy, "model.safetensors", "safetensors")


@pytest.mark.parametrize("zipfile", [True, False])
def test_torch_save_pickle_renamed(tiny_copy, zipfile):
    """A torch.save file under the safetensors name is refused without being unpickled."""
    sd = tensors_of(tiny_copy / "model.safetensors")
    torch.save(sd, tiny_copy / "model.safetensors", _use_new_zipfile_serialization=zipfile)
    refused(tiny_copy, "model.safetensors", "pickle")


class Boom:
    def __reduce__(self):
        return (os._exit, (99,))  # would kill the test process if ever unpickled


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_pickle_is_never_unpickled(tiny_copy, protocol):
    (tiny_copy / "model.safetensors").write_bytes(pickle.dumps({"w": Boom()}, protocol=protocol))
    refused(tiny_copy, "model.safetensors")


def test_random_bytes(tiny_copy):
    g = torch.Generator().manual_seed(0)
    (tiny_copy / "model.safetensors").write_bytes(bytes(torch.randint(0, 256, (4096,), generator=g).tolist()))
    refused(tiny_copy, "model.safetensors", "safetensors")


def test_missing_tensors(tiny_copy):
    p = tiny_copy / "model.safetensors"
    sd = tensors_of(p)
    del sd["h0"], sd["f_H.0.mlp.down.weight"]
    save_file(sd, str(p))
    refused(tiny_copy, "model.safetensors", "missing 2 tensors", "h0")


def test_unexpected_tensors(tiny_copy):
    p = tiny_copy / "model.safetensors"
    sd = tensors_of(p)
    sd["stowaway"] = torch.zeros(3)
    save_file(sd, str(p))
    refused(tiny_copy, "model.safetensors", "unexpected", "stowaway")


def test_foreign_safetensors(tiny_copy):
    save_file({"embeddings.weight": torch.zeros(10, 4)}, str(tiny_copy / "model.safetensors"))
    refused(tiny_copy, "model.safetensors", "do not match config.json")


def test_resume_file_is_checked_too(tiny_copy):
    p = tiny_copy / "resume.safetensors"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="resume.safetensors"):
        read_tensors(p)


# --- bad config -------------------------------------------------------------------------------------------
def edit_config(d, fn):
    p = d / "config.json"
    cfg = json.loads(p.read_text())
    fn(cfg)
    p.write_text(json.dumps(cfg))


def test_config_not_json(tiny_copy):
    (tiny_copy / "config.json").write_text("{model: D=32")
    refused(tiny_copy, "config.json", "not valid JSON")


def test_config_binary(tiny_copy):
    (tiny_copy / "config.json").write_bytes(b"\xff\xfe\x00garbage")
    refused(tiny_copy, "config.json")


def test_config_not_an_object(tiny_copy):
    (tiny_copy / "config.json").write_text("[1, 2, 3]")
    refused(tiny_copy, "config.json", "JSON object")


def test_config_unknown_model_key(tiny_copy):
    edit_config(tiny_copy, lambda c: c["model"].__setitem__("wings", 2))
    refused(tiny_copy, "config.json", "wings")


def test_config_unknown_train_key(tiny_copy):
    edit_config(tiny_copy, lambda c: c["train"].__setitem__("rocket_fuel", 1.0))
    refused(tiny_copy, "config.json", "rocket_fuel")


def test_config_unknown_section(tiny_copy):
    edit_config(tiny_copy, lambda c: c.__setitem__("extras", {}))
    refused(tiny_copy, "config.json", "extras")


def test_config_invalid_value(tiny_copy):
    edit_config(tiny_copy, lambda c: c["model"].__setitem__("mode", "magic"))
    refused(tiny_copy, "config.json", "mode")


@pytest.mark.parametrize("key,value", [("D", "32"), ("D", 32.0), ("D", None), ("D", [32]), ("D", True),
                                       ("mlp_ratio", "2"), ("mode", 1), ("sigma_min", "0.001")])
def test_config_wrong_type(tiny_copy, key, value):
    edit_config(tiny_copy, lambda c: c["model"].__setitem__(key, value))
    refused(tiny_copy, "config.json", key)


@pytest.mark.parametrize("key,value", [("D", 64), ("n_layers", 2), ("vocab", 5), ("seq_len", 100), ("mlp_ratio", 4.0)])
def test_config_wrong_sizes_vs_weights(tiny_copy, key, value):
    edit_config(tiny_copy, lambda c: c["model"].__setitem__(key, value))
    refused(tiny_copy, "model.safetensors", "do not match config.json")


def test_config_wrong_mode_vs_weights(tiny_copy):
    """gram weights under a deterministic config: the guidance tensors are unexpected."""
    edit_config(tiny_copy, lambda c: c["model"].__setitem__("mode", "deterministic"))
    refused(tiny_copy, "model.safetensors", "unexpected", "posterior.")


def test_config_without_task_sizes(tiny_copy):
    edit_config(tiny_copy, lambda c: c["model"].__setitem__("seq_len", 0))
    refused(tiny_copy, "config.json", "seq_len")


def test_card_not_json(tiny_copy):
    (tiny_copy / "card.json").write_text("not json")
    refused(tiny_copy, "card.json", "not valid JSON")


def test_config_file_is_a_gram_config(tiny_checkpoint):
    cfg = Config.load(tiny_checkpoint / "config.json")
    assert cfg.model.mode == "gram" and cfg.train.steps == 4
