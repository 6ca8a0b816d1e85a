"""Config registry: names, official numbers, threshold presets, errors."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace

import pytest

from grm.runtime.errors import ConfigError
from grm.runtime.params import ModelMetadata, TrackerParams
from grm.train.config import CONFIGS, get_config, threshold_presets


def test_registry_names():
    assert set(CONFIGS) == {"vitb_256", "vitb_256_got", "vitl_320", "tiny"}
    assert get_config("vitb_256_ep300") is CONFIGS["vitb_256"]


@pytest.mark.parametrize(
    ("name", "dim", "depth", "heads", "search", "factor", "feat"),
    [
        ("vitb_256", 768, 12, 12, 256, 4.0, 16),
        ("vitb_256_got", 768, 12, 12, 256, 4.0, 16),
        ("vitl_320", 1024, 24, 16, 320, 5.0, 20),
        ("tiny", 96, 4, 3, 128, 4.0, 8),
    ],
)
def test_official_numbers(name, dim, depth, heads, search, factor, feat):
    cfg = get_config(name)
    assert (cfg.model.embed_dim, cfg.model.depth, cfg.model.num_heads) == (dim, depth, heads)
    assert (cfg.tracker.search_size, cfg.tracker.search_factor, cfg.tracker.feat_size) == (search, factor, feat)
    assert cfg.tracker.template_factor == 2.0


def test_threshold_presets_follow_spec():
    vitb = get_config("vitb_256").tracker
    assert [vitb.threshold_for(d) for d in ("lasot", "nfs", "uav", "avist", "otb", "got10k_test", None)] == [
        0.4,
        0.6,
        0.55,
        0.4,
        0.0,
        0.0,
        0.0,
    ]
    for name in ("vitb_256_got", "vitl_320"):
        assert set(threshold_presets(name).values()) == {0.0}


def test_unknown_name_lists_known_names_and_suggests():
    with pytest.raises(ConfigError, match=r"known configs: vitb_256, .*did you mean 'vitl_320'"):
        get_config("vitl320")


def test_configs_are_frozen_and_validated():
    cfg = get_config("tiny")
    with pytest.raises(FrozenInstanceError):
        cfg.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.tracker.thresholds["LASOT"] = 0.9  # type: ignore[index]
    with pytest.raises(ConfigError):
        replace(cfg.model, embed_dim=97)
    with pytest.raises(ConfigError):
        TrackerParams(template_size=60, template_factor=2.0, search_size=128, search_factor=4.0)


def test_metadata_round_trip():
    meta = ModelMetadata(
        config="vitb_256",
        tracker=get_config("vitb_256").tracker,
        precision="fp16",
        opset=17,
        checkpoint_sha256="ab" * 32,
        depth=12,
    )
    again = ModelMetadata.from_json(meta.to_json())
    assert again == meta
    assert again.tracker.threshold_for("uav") == 0.55
