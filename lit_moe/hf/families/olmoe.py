"""OLMoE: softmax -> top-k -> renormalised only with ``norm_topk_prob``; q/k RMSNorm over the full
projected width; ``clip_qkv``; ``attention_bias`` on q/k/v/o; every layer MoE."""

from lit_moe.hf.families.base import (
    Family,
    attention_fields,
    common_unsupported,
    hf_attention_config,
)


def _fields(hf) -> dict:
    bias = bool(getattr(hf, "attention_bias", False))
    return {**attention_fields(hf), "num_experts": hf.num_experts, "top_k": hf.num_experts_per_tok,
            "d_expert": hf.intermediate_size, "normalize_topk": bool(hf.norm_topk_prob), "qk_norm": "full",
            "qkv_bias": bias, "out_bias": bias, "clip_qkv": hf.clip_qkv}


def _hf_config(config) -> dict:
    out = {**hf_attention_config(config), "num_experts": config.num_experts, "num_experts_per_tok": config.top_k,
           "intermediate_size": config.d_expert, "norm_topk_prob": config.normalize_topk,
           "attention_bias": config.qkv_bias, "clip_qkv": config.clip_qkv}
    out.pop("head_dim")  # OLMoE derives it from hidden_size / num_attention_heads
    return out


def _unsupported(config) -> list[str]:
    reasons = common_unsupported(config, qk_norm="full", dense=False, bias="all", clip_qkv=True)
    if config.shared_hidden:
        reasons.append("has no shared expert")
    if any(not config.is_moe_block(i) for i in range(config.n_layers)):
        reasons.append("has no dense layers")
    if config.head_dim * config.n_heads != config.d_model:
        reasons.append("needs head_dim = d_model / n_heads")
    return reasons


FAMILY = Family(model_type="olmoe", architecture="OlmoeForCausalLM", config_fields=_fields, hf_config=_hf_config,
                unsupported=_unsupported)
