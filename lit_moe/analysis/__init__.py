"""Analyses of trained MoE language models: MoE Lens (routing shares, early decoding, top-m
perplexity) and sparse crosscoders between two models (activation cache, BatchTopK crosscoder).
See docs/analysis.md."""

from lit_moe.analysis.domains import DomainDataModule
from lit_moe.analysis.lens_module import MoELensModule
from lit_moe.analysis.loading import load_language_model

__all__ = ["DomainDataModule", "MoELensModule", "load_language_model"]
