"""Qwen3-MoE: OLMoE's router (released configs set ``norm_topk_prob: true``); per-head q/k RMSNorm;
``attention_bias`` on q/k/v/o; no shared expert; dense layers via ``mlp_only_layers``."""

from lit_moe.hf.families.base import (
    Family,
    attention_fields,
    common_unsupported,
    hf_attention_config,
)
from lit_moe.hf.families.qwen_moe_common import (
    dense_layer_fields,
    hf_dense_layer_config,
)


def _fields(hf) -> dict:
    bias = bool(getattr(hf, "attention_bias", False))
    return {**attention_fields(hf), **dense_layer_fields(hf), "qk_norm": "per_head", "qkv_bias": bias,
            "out_bias": bias}


def _hf_config(config) -> dict:
    return {**hf_attention_config(config), **hf_dense_layer_config(config), "attention_bias": config.qkv_bias,
            "use_sliding_window": False}


def _unsupported(config) -> list[str]:
    reasons = common_unsupported(config, qk_norm="per_head", dense=False, bias="all")
    if config.shared_hidden:
        reasons.append("has no shared expert")
    return reasons


FAMILY = Family(model_type="qwen3_moe", architecture="Qwen3MoeForCausalLM", config_fields=_fields,
                hf_config=_hf_config, unsupported=_unsupported)
