"""Tiny transformers-host models for the tests: re-exported from recipes.tiny_model."""

from ..recipes.tiny_model import build_tiny_st, save_tiny_onevision, tiny_onevision_config

__all__ = ["build_tiny_st", "save_tiny_onevision", "tiny_onevision_config"]
