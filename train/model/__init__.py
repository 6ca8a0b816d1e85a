"""The GRM network in PyTorch."""

from grm.train.model.build import build_model
from grm.train.model.grm import GRM, GrmOutput

__all__ = ["GRM", "GrmOutput", "build_model"]
