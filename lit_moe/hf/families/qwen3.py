"""Qwen3 (dense): GQA, explicit head_dim, per-head q/k RMSNorm, ``attention_bias`` on q/k/v/o."""

from lit_moe.hf.families.base import (
    Family,
    attention_fields,
    common_unsupported,
    dense_fields,
    hf_attention_config,
)


def _fields(hf) -> dict:
    bias = bool(getattr(hf, "attention_bias", False))
    return {**attention_fields(hf), **dense_fields(hf), "qk_norm": "per_head", "qkv_bias": bias, "out_bias": bias}


def _hf_config(config) -> dict:
    return {**hf_attention_config(config), "intermediate_size": config.dense_hidden, "attention_bias": config.qkv_bias}


FAMILY = Family(
    model_type="qwen3", architecture="Qwen3ForCausalLM", config_fields=_fields, hf_config=_hf_config,
    unsupported=lambda c: common_unsupported(c, qk_norm="per_head", dense=True, bias="all"))
