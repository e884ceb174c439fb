"""Registry of the supported Hugging Face families (one module each)."""

from __future__ import annotations

from lit_moe.errors import UserInputError
from lit_moe.hf.families import llama, mixtral, olmoe, qwen2_moe, qwen3, qwen3_moe
from lit_moe.hf.families.base import Family
from lit_moe.model.config import MoETransformerConfig

# Export picks the first family (in this order) that represents a model exactly.
FAMILIES: dict[str, Family] = {
    m.FAMILY.model_type: m.FAMILY for m in (qwen3, llama, qwen3_moe, olmoe, mixtral, qwen2_moe)
}


def family_for(model_type: str) -> Family:
    if model_type not in FAMILIES:
        raise UserInputError(f"unsupported model_type {model_type!r}; supported: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[model_type]


def family_for_config(config: MoETransformerConfig, family: str | None = None) -> Family:
    """The named family (checked to represent ``config`` exactly) or the first one that does."""
    if family is not None:
        chosen = family_for(family)
        reasons = chosen.unsupported(config)
        if reasons:
            raise UserInputError(f"cannot export this model as {family}: it {'; '.join(reasons)}")
        return chosen
    for candidate in FAMILIES.values():
        if not candidate.unsupported(config):
            return candidate
    details = "; ".join(f"{name} {', '.join(f.unsupported(config))}" for name, f in FAMILIES.items())
    raise UserInputError(f"no Hugging Face family represents this model exactly: {details}")


__all__ = ["FAMILIES", "Family", "family_for", "family_for_config"]
