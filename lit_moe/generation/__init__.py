"""Text generation from trained or imported models (KV cache, greedy / top-p) and its predict module."""

from lit_moe.generation.module import GenerationModule
from lit_moe.generation.prompts import PromptDataModule
from lit_moe.generation.sampling import generate, sample_top_p

__all__ = ["GenerationModule", "PromptDataModule", "generate", "sample_top_p"]
