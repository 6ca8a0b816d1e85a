"""Typed, frozen GRM configurations, registered by name in one read-only table.

``get_config("vitb_256")`` returns the official ``vitb_256_ep300`` experiment; overrides go through
``dataclasses.replace``. Sizes are stored once: the tracker's crop sizes live in :class:`TrackerParams`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from types import MappingProxyType

from grm.runtime.errors import ConfigError
from grm.runtime.params import TrackerParams

TARGET_TYPES = ("allmax", "allavg", "roimax", "roiavg")
# MAE/DeiT files accepted by the official backbone builder -> number of leading class/dist rows in pos_embed.
PATCH_START_INDEX = MappingProxyType(
    {
        "mae_pretrain_vit_base.pth": 1,
        "deit_base_patch16_224-b5f2ef4d.pth": 1,
        "deit_base_distilled_patch16_224-df68dfff.pth": 2,
        "mae_pretrain_vit_large.pth": 1,
        "": 1,
    }
)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Network architecture (docs/model.md)."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    patch_size: int = 16
    pretrain_img_size: int = 224
    head_channels: int = 256
    target_type: str = "allmax"
    drop_path_rate: float = 0.1
    layernorm_eps: float = 1e-6
    divide_hidden: tuple[int, int] = (384, 192)
    pretrain_file: str = "mae_pretrain_vit_base.pth"

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.target_type not in TARGET_TYPES:
            raise ConfigError(f"target_type {self.target_type!r} not in {TARGET_TYPES}")
        if self.depth < 2:
            raise ConfigError("depth must be at least 2 (block 0 never divides)")
        if self.pretrain_file not in PATCH_START_INDEX:
            raise ConfigError(f"pretrain_file {self.pretrain_file!r} not in {sorted(PATCH_START_INDEX)}")

    @property
    def patch_start_index(self) -> int:
        """Rows of the pretrained pos_embed that belong to class/distillation tokens."""
        return PATCH_START_INDEX[self.pretrain_file]

    @property
    def pretrain_grid(self) -> int:
        return self.pretrain_img_size // self.patch_size


@dataclass(frozen=True, kw_only=True)
class CropJitter:
    """Training crop of one input: crop factor and jitter (docs/training.md, processing); the size is the tracker's."""

    factor: float
    center_jitter: float
    scale_jitter: float


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Official training recipe (docs/training.md)."""

    datasets: tuple[str, ...] = ("LASOT", "GOT10K_vot_train", "COCO17", "TRACKINGNET")
    dataset_ratios: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    samples_per_epoch: int = 60000
    max_sample_interval: int = 200
    search: CropJitter = CropJitter(factor=4.0, center_jitter=3.0, scale_jitter=0.25)
    template: CropJitter = CropJitter(factor=2.0, center_jitter=0.0, scale_jitter=0.0)
    batch_size: int = 40
    epochs: int = 300
    lr_drop_epoch: int = 240
    lr: float = 4e-4
    weight_decay: float = 1e-4
    backbone_multiplier: float = 0.1
    giou_weight: float = 2.0
    l1_weight: float = 5.0
    focal_weight: float = 1.0
    grad_clip_norm: float = 0.1
    num_workers: int = 16
    grayscale_probability: float = 0.05
    seed: int = 42

    def __post_init__(self) -> None:
        if len(self.datasets) != len(self.dataset_ratios):
            raise ConfigError("datasets and dataset_ratios must have the same length")


@dataclass(frozen=True, kw_only=True)
class GrmConfig:
    """One named GRM variant: architecture, test-time tracker parameters and training recipe."""

    name: str
    model: ModelConfig
    tracker: TrackerParams
    train: TrainConfig = field(default_factory=TrainConfig)
    official_name: str = ""
    test_epoch: int = 300

    def __post_init__(self) -> None:
        if self.tracker.patch_size != self.model.patch_size:
            raise ConfigError("tracker.patch_size must equal model.patch_size")


_VITB_THRESHOLDS = {
    "DEFAULT": 0.0,
    "LASOT": 0.4,
    "NFS": 0.6,
    "UAV": 0.55,
    "AVIST": 0.4,
    "TRACKINGNET": 0.0,
    "GOT10K_TEST": 0.0,
}

VITB = ModelConfig(embed_dim=768, depth=12, num_heads=12)
VITL = ModelConfig(embed_dim=1024, depth=24, num_heads=16, pretrain_file="mae_pretrain_vit_large.pth")
TRACKER_256 = TrackerParams(
    template_size=128, template_factor=2.0, search_size=256, search_factor=4.0, thresholds=_VITB_THRESHOLDS
)

CONFIGS: MappingProxyType[str, GrmConfig] = MappingProxyType(
    {
        "vitb_256": GrmConfig(name="vitb_256", official_name="vitb_256_ep300", model=VITB, tracker=TRACKER_256),
        "vitb_256_got": GrmConfig(
            name="vitb_256_got",
            official_name="vitb_256_got_ep100",
            model=VITB,
            tracker=TrackerParams(template_size=128, template_factor=2.0, search_size=256, search_factor=4.0),
            train=TrainConfig(datasets=("GOT10K_train",), dataset_ratios=(1.0,), epochs=100, lr_drop_epoch=80),
            test_epoch=100,
        ),
        "vitl_320": GrmConfig(
            name="vitl_320",
            official_name="vitl_320_ep300",
            model=VITL,
            tracker=TrackerParams(template_size=128, template_factor=2.0, search_size=320, search_factor=5.0),
            train=TrainConfig(search=CropJitter(factor=5.0, center_jitter=4.5, scale_jitter=0.5), batch_size=10),
        ),
        # The architecture of the conformance fixture (tests/data/upstream_tiny): 4 blocks, 96 wide, 64-channel head.
        "tiny": GrmConfig(
            name="tiny",
            official_name="tiny",
            model=ModelConfig(embed_dim=96, depth=4, num_heads=3, head_channels=64, pretrain_file=""),
            tracker=TrackerParams(
                template_size=64, template_factor=2.0, search_size=128, search_factor=4.0, thresholds=_VITB_THRESHOLDS
            ),
            train=TrainConfig(
                datasets=("GOT10K_train",),
                dataset_ratios=(1.0,),
                batch_size=8,
                samples_per_epoch=2000,
                epochs=20,
                lr_drop_epoch=16,
                num_workers=2,
            ),
            test_epoch=1,
        ),
    }
)


def get_config(name: str | GrmConfig) -> GrmConfig:
    """Look up a config by name; unknown names fail with the known names and a suggestion."""
    if isinstance(name, GrmConfig):
        return name
    if name in CONFIGS:
        return CONFIGS[name]
    by_official = {c.official_name: c for c in CONFIGS.values()}
    if name in by_official:
        return by_official[name]
    close = difflib.get_close_matches(name, list(CONFIGS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown config {name!r}; known configs: {', '.join(CONFIGS)}{hint}")


def threshold_presets(config: str | GrmConfig) -> dict[str, float]:
    """Per-dataset division thresholds of a config, keyed by upper-case dataset name (docs/tracker.md)."""
    return dict(get_config(config).tracker.thresholds)
