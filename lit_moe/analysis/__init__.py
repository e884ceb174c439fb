"""Analyses of trained MoE language models: MoE Lens (routing shares, early decoding, top-m
perplexity) and sparse crosscoders between two models (activation cache, BatchTopK crosscoder).
See docs/analysis.md."""

from lit_moe.analysis.activation_cache import ActivationCache
from lit_moe.analysis.cache_data import ActivationCacheDataModule
from lit_moe.analysis.crosscoder import BatchTopKCrosscoder
from lit_moe.analysis.crosscoder_module import CrosscoderModule
from lit_moe.analysis.domains import DomainDataModule
from lit_moe.analysis.harvest import ActivationHarvestModule
from lit_moe.analysis.lens_module import MoELensModule
from lit_moe.analysis.loading import load_language_model

__all__ = ["ActivationCache", "ActivationCacheDataModule", "ActivationHarvestModule", "BatchTopKCrosscoder",
           "CrosscoderModule", "DomainDataModule", "MoELensModule", "load_language_model"]
