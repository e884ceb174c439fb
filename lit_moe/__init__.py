"""Lightning modules for sparse Mixture-of-Experts language models (TopK, Default MoE, dense, expert-group)."""

from lit_moe.data import TextDataModule
from lit_moe.model import MoETransformer, MoETransformerConfig
from lit_moe.module import LanguageModelingModule

__all__ = ["LanguageModelingModule", "MoETransformer", "MoETransformerConfig", "TextDataModule"]
