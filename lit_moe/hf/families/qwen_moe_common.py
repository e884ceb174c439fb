"""What Qwen2-MoE and Qwen3-MoE share: dense layers chosen by ``decoder_sparse_step`` / ``mlp_only_layers``."""

from lit_moe.hf.families.base import moe_layer_indices


def dense_layer_fields(hf) -> dict:
    step = getattr(hf, "decoder_sparse_step", 1) or 1
    only = set(getattr(hf, "mlp_only_layers", None) or [])
    dense = [i for i in range(hf.num_hidden_layers) if i in only or (i + 1) % step != 0]
    return {"dense_layers": dense, "d_dense": hf.intermediate_size, "num_experts": hf.num_experts,
            "top_k": hf.num_experts_per_tok, "d_expert": hf.moe_intermediate_size,
            "normalize_topk": bool(hf.norm_topk_prob)}


def hf_dense_layer_config(config) -> dict:
    moe = set(moe_layer_indices(config))
    return {"decoder_sparse_step": 1, "mlp_only_layers": [i for i in range(config.n_layers) if i not in moe],
            "intermediate_size": config.dense_hidden, "moe_intermediate_size": config.d_expert,
            "num_experts": config.num_experts, "num_experts_per_tok": config.top_k,
            "norm_topk_prob": config.normalize_topk}
