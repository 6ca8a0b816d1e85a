"""Checkpoint safety and strictness, official key layouts, and MAE/DeiT adaptation."""

from __future__ import annotations

import json
import os
import pickle
import zipfile

import pytest
import torch

from grm.runtime.errors import CheckpointError
from grm.train import adapt_pretrained, build_model, load_checkpoint
from grm.train.checkpoint import read_checkpoint
from grm.train.config import get_config
from grm.train.model import GRM

OFFICIAL = {"vitb_256": "vitb_256_ep300", "vitb_256_got": "vitb_256_got_ep100", "vitl_320": "vitl_320_ep300"}


def _meta_state(name: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = GRM(get_config(name))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_state_dict_matches_official_layout(shared_dir, name):
    ref = json.loads((shared_dir / "reference" / "state_dict_keys" / f"{OFFICIAL[name]}.json").read_text())
    expected = {e["key"]: tuple(e["shape"]) for e in ref["keys"]}
    assert _meta_state(name) == expected
    assert len(expected) == ref["num_tensors"]


def _official_file(path, state, **extra):
    payload = {
        "epoch": 1,
        "actor_type": "GRMActor",
        "net_type": "GRM",
        "net": state,
        "net_info": None,
        "constructor": None,
        "optimizer": {"state": {}, "param_groups": []},
        "stats": {},
        "settings": None,
    }
    payload.update(extra)
    torch.save(payload, path)
    return path


class Settings:  # stands in for the official trainer's pickled settings object
    def __init__(self):
        self.workspace_dir = "/home/someone/GRM"


def test_loads_official_file_with_pickled_objects(tmp_path):
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    path = _official_file(tmp_path / "GRM_ep0001.pth.tar", model.state_dict(), settings=Settings())
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    loaded = load_checkpoint(path)
    assert loaded.config.name == "tiny" and not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


class Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    model = build_model("tiny")
    path = _official_file(tmp_path / "evil.pth.tar", model.state_dict(), settings=Exploit(marker))
    with pytest.raises(CheckpointError, match="system"):
        load_checkpoint(path)
    assert not marker.exists()


def test_unknown_classes_are_neutralised(tmp_path):
    from grm.train.safe_pickle import InertStub

    path = _official_file(tmp_path / "GRM_ep0001.pth.tar", build_model("tiny").state_dict(), settings=Settings())
    data = read_checkpoint(path)
    assert isinstance(data["settings"], InertStub)
    assert not hasattr(data["settings"], "workspace_dir"), "state of unknown classes must be dropped"


def test_zip_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "other.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x", pickle.dumps({"net": {}}))
    with pytest.raises(CheckpointError, match="zip archive but not a PyTorch checkpoint"):
        read_checkpoint(path)


def test_project_format_and_config_checks(tmp_path):
    model = build_model("tiny")
    path = tmp_path / "project.pt"
    torch.save({"model": model.state_dict(), "config_name": "tiny", "epoch": 3}, path)
    assert load_checkpoint(path).config.name == "tiny"
    with pytest.raises(CheckpointError, match="trained as tiny"):
        load_checkpoint(path, config="vitb_256")


def test_wrong_checkpoint_for_config_is_one_clear_error(tmp_path):
    path = _official_file(tmp_path / "tiny.pth.tar", build_model("tiny").state_dict())
    with pytest.raises(CheckpointError, match="does not fit config vitb_256.*tiny"):
        load_checkpoint(path, config="vitb_256")


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = build_model("tiny").state_dict()
    state.pop("backbone.norm.weight")
    state["extra.weight"] = torch.zeros(1)
    path = _official_file(tmp_path / "bad.pth.tar", state)
    with pytest.raises(CheckpointError, match=r"missing 1 keys.*backbone\.norm\.weight.*unexpected 1 keys"):
        load_checkpoint(path, config="tiny")


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pth.tar")
    corrupt = tmp_path / "corrupt.pth.tar"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint"):
        load_checkpoint(corrupt)


def test_adapt_pretrained_mae_reports_and_resizes():
    torch.manual_seed(0)
    cfg = get_config("tiny")
    dim, grid = cfg.model.embed_dim, cfg.model.pretrain_grid
    pos = torch.randn(1, 1 + grid * grid, dim)
    source = {
        "model": {
            "cls_token": torch.randn(1, 1, dim),
            "pos_embed": pos,
            "mask_token": torch.zeros(1, 1, dim),
            "decoder_embed.weight": torch.zeros(4, dim),
            "head.weight": torch.zeros(10, dim),
            "patch_embed.proj.weight": torch.randn(dim, 3, 16, 16),
            "norm.weight": torch.ones(dim),
        }
    }
    model = build_model("tiny")
    state, report = adapt_pretrained(source, "tiny", model_keys=list(model.state_dict()))
    assert report.dropped == ["decoder_embed.weight", "head.weight", "mask_token"]
    assert report.derived == ["backbone.pos_embed_z", "backbone.pos_embed_x"]
    assert "backbone.blocks.1.attn.divide_predict.0.weight" in report.uninitialised
    assert state["backbone.pos_embed_z"].shape == (1, 16, dim)
    assert state["backbone.pos_embed_x"].shape == (1, 64, dim)
    # Resizing a constant grid keeps it constant; the class row is not part of it.
    const = torch.cat([torch.full((1, 1, dim), 9.0), torch.ones(1, grid * grid, dim)], dim=1)
    state, _ = adapt_pretrained({"pos_embed": const}, "tiny")
    assert torch.allclose(state["backbone.pos_embed_x"], torch.ones(1, 64, dim), atol=1e-5)
    missing = model.load_state_dict(state, strict=False).missing_keys
    assert "backbone.pos_embed_x" not in missing


def test_adapt_pretrained_distilled_drops_two_rows():
    dim = 768
    pos = torch.zeros(1, 198, dim)
    pos[:, :2] = 5.0
    from dataclasses import replace

    cfg = get_config("vitb_256")
    cfg = replace(cfg, model=replace(cfg.model, pretrain_file="deit_base_distilled_patch16_224-df68dfff.pth"))
    state, _ = adapt_pretrained({"model": {"pos_embed": pos, "dist_token": torch.zeros(1, 1, dim)}}, cfg)
    assert state["backbone.pos_embed_x"].abs().max() < 1e-6
    with pytest.raises(CheckpointError, match="pos_embed has shape"):
        adapt_pretrained({"pos_embed": pos}, "vitb_256")
