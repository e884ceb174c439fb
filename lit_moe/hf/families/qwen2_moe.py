"""Qwen2-MoE: as OLMoE's router (``norm_topk_prob``); q/k/v biases (``qkv_bias``), no o bias, no q/k
norm; a shared expert of width ``shared_expert_intermediate_size`` scaled by sigmoid(shared_expert_gate(x)).

Our ungated shared experts export exactly too: gate weight 0 (sigmoid = 1/2) and the down projection x2.
"""

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
    shared = int(getattr(hf, "shared_expert_intermediate_size", 0) or 0)
    return {**attention_fields(hf), **dense_layer_fields(hf), "qkv_bias": bool(getattr(hf, "qkv_bias", True)),
            "num_shared_experts": 1 if shared else 0, "d_shared": shared or None, "shared_expert_gate": bool(shared)}


def _hf_config(config) -> dict:
    return {**hf_attention_config(config), **hf_dense_layer_config(config), "qkv_bias": config.qkv_bias,
            "shared_expert_intermediate_size": config.shared_hidden, "use_sliding_window": False}


FAMILY = Family(
    model_type="qwen2_moe", architecture="Qwen2MoeForCausalLM", config_fields=_fields, hf_config=_hf_config,
    unsupported=lambda c: common_unsupported(c, qk_norm="none", dense=False, bias="qkv"), shared_expert=True)
