"""Mixtral: softmax (fp32) -> top-k -> always renormalised; experts ``block_sparse_moe.experts.{e}.w1/w3/w2``
(w1 gate, w3 up, w2 down); no attention biases, no q/k norm, every layer MoE."""

from lit_moe.hf.families.base import (
    Family,
    attention_fields,
    common_unsupported,
    hf_attention_config,
)


def _fields(hf) -> dict:
    return {**attention_fields(hf), "num_experts": hf.num_local_experts, "top_k": hf.num_experts_per_tok,
            "d_expert": hf.intermediate_size, "normalize_topk": True}


def _hf_config(config) -> dict:
    return {**hf_attention_config(config), "num_local_experts": config.num_experts,
            "num_experts_per_tok": config.top_k, "intermediate_size": config.d_expert, "router_jitter_noise": 0.0,
            "sliding_window": None}


def _unsupported(config) -> list[str]:
    reasons = common_unsupported(config, qk_norm="none", dense=False, bias="none")
    if not config.normalize_topk:
        reasons.append("always renormalises the top-k weights (needs normalize_topk=true)")
    if config.shared_hidden:
        reasons.append("has no shared expert")
    if any(not config.is_moe_block(i) for i in range(config.n_layers)):
        reasons.append("has no dense layers")
    return reasons


FAMILY = Family(
    model_type="mixtral", architecture="MixtralForCausalLM", config_fields=_fields, hf_config=_hf_config,
    unsupported=_unsupported, moe_prefix="block_sparse_moe", expert_names=("w1", "w3", "w2"))
