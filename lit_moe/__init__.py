"""Lightning modules for sparse Mixture-of-Experts language models (TopK, Default MoE, dense, expert-group)."""

from lit_moe.data import BuiltinText, HubTextStream, LocalTextFiles, PackedTextDataModule, TextDataModule
from lit_moe.model import MoETransformer, MoETransformerConfig
from lit_moe.module import LanguageModelingModule

__all__ = ["BuiltinText", "HubTextStream", "LanguageModelingModule", "LocalTextFiles", "MoETransformer",
           "MoETransformerConfig", "PackedTextDataModule", "TextDataModule"]
