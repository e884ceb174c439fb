"""Tiny random transformers models of every supported family, saved sharded like Hub checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch

VOCAB = 96


def hf_config(family: str):
    import transformers as tf

    common = dict(vocab_size=VOCAB, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=64, num_hidden_layers=2)
    if family == "mixtral":
        return tf.MixtralConfig(**common, intermediate_size=32, num_local_experts=4, num_experts_per_tok=2)
    if family == "olmoe":
        return tf.OlmoeConfig(**common, intermediate_size=32, num_experts=6, num_experts_per_tok=2, clip_qkv=1.5,
                              pad_token_id=0, eos_token_id=1)
    if family == "qwen2_moe":
        return tf.Qwen2MoeConfig(**{**common, "num_hidden_layers": 3}, intermediate_size=48, moe_intermediate_size=24,
                                 shared_expert_intermediate_size=40, num_experts=6, num_experts_per_tok=2,
                                 mlp_only_layers=[1])
    if family == "qwen3_moe":
        return tf.Qwen3MoeConfig(**{**common, "num_hidden_layers": 3}, head_dim=24, intermediate_size=48,
                                 moe_intermediate_size=24, num_experts=6, num_experts_per_tok=3, norm_topk_prob=True,
                                 mlp_only_layers=[0])
    if family == "llama":
        return tf.LlamaConfig(**common, intermediate_size=80, attention_bias=True, tie_word_embeddings=True,
                              rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 4.0,
                                               "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                               "original_max_position_embeddings": 16})
    if family == "qwen3":
        return tf.Qwen3Config(**common, head_dim=32, intermediate_size=80,
                              rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                               "original_max_position_embeddings": 16})
    raise KeyError(family)


MOE_FAMILIES = ["mixtral", "olmoe", "qwen2_moe", "qwen3_moe"]
DENSE_FAMILIES = ["llama", "qwen3"]
FAMILIES = MOE_FAMILIES + DENSE_FAMILIES


def random_hf_model(family: str, seed: int = 0):
    """A transformers model with weights large enough that routing and norms matter."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return scale_weights(AutoModelForCausalLM.from_config(hf_config(family)).eval())


@torch.no_grad()
def scale_weights(model):
    for name, param in model.named_parameters():
        if name.endswith("norm.weight") or "layernorm" in name:
            param.copy_(1.0 + 0.2 * torch.randn_like(param))
        else:
            param.normal_(0.0, 0.15)
    return model


def save_random_hf(family: str, folder: Path, seed: int = 0, max_shard_size: str = "60KB"):
    model = random_hf_model(family, seed)
    model.save_pretrained(folder, max_shard_size=max_shard_size)
    return model


def hf_logits_and_topk(model, tokens_BS: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and, per MoE layer, the sorted top-k expert indices of every token."""
    with torch.no_grad():
        kwargs = {"output_router_logits": True} if hasattr(model.config, "num_experts_per_tok") else {}
        out = model(tokens_BS, **kwargs)
    top_k = getattr(model.config, "num_experts_per_tok", 0)
    routers = getattr(out, "router_logits", None) or ()
    return out.logits, [r.float().softmax(-1).topk(top_k, dim=-1).indices.sort(-1).values for r in routers]


def our_logits_and_topk(model, tokens_BS: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    picked = []
    hooks = [layer.router.register_forward_hook(lambda _m, _i, out: picked.append(out.expert_idx_TK.sort(-1).values))
             for layer in model.moe_layers().values()]
    try:
        with torch.no_grad():
            logits = model(tokens_BS).logits_BSV
    finally:
        for hook in hooks:
            hook.remove()
    return logits, picked


def save_tiny_with_tokenizer(family: str, folder: Path, vocab_size: int = 320, seed: int = 0, scaled: bool = False,
                             **config_overrides):
    """A tiny random model whose folder also holds a BPE ``tokenizer.json`` trained on the built-in
    corpus (as a Hub folder would), its vocabulary matching the model's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM

    from lit_moe.data.corpus import builtin_documents

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(builtin_documents(["docs"])[:20], trainer=trainer)
    config = hf_config(family)
    config.vocab_size = tokenizer.get_vocab_size()
    for key, value in config_overrides.items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    if scaled:
        scale_weights(model)
    model.save_pretrained(folder, max_shard_size="200KB")
    tokenizer.save(str(Path(folder) / "tokenizer.json"))
    return model
