"""Autoregressive decoding with a KV cache: greedy or nucleus (top-p) sampling.

Shape legend: B batch (1: prompts are decoded one at a time, no padding), S sequence, V vocabulary.
"""

from __future__ import annotations

import torch

from lit_moe.model import MoETransformer


def sample_top_p(logits_V: torch.Tensor, top_p: float, temperature: float,
                 generator: torch.Generator | None = None) -> int:
    """Sample from the smallest set of most likely tokens whose probability reaches ``top_p``
    (the most likely token is always kept), at ``temperature``; ``temperature == 0`` is greedy."""
    if temperature <= 0:
        return int(logits_V.argmax())
    probs_V = torch.softmax(logits_V.float() / temperature, dim=-1)
    sorted_V, order_V = probs_V.sort(descending=True)
    before_V = sorted_V.cumsum(0) - sorted_V  # mass of the tokens ranked above each one
    sorted_V = torch.where(before_V < top_p, sorted_V, torch.zeros_like(sorted_V))
    pick = torch.multinomial(sorted_V / sorted_V.sum(), 1, generator=generator)
    return int(order_V[pick])


@torch.no_grad()
def generate(model: MoETransformer, prompt_ids: list[int], max_new_tokens: int, temperature: float = 0.0,
             top_p: float = 1.0, eos_id: int | None = None, generator: torch.Generator | None = None
             ) -> list[int]:
    """Continue ``prompt_ids`` by up to ``max_new_tokens`` tokens (stopping after ``eos_id``); the
    prompt is encoded once, then each new token costs one single-position forward over the cache."""
    if not prompt_ids:
        raise ValueError("the prompt is empty")
    device = model.embed.weight.device
    limit = model.config.max_seq_len
    if len(prompt_ids) > limit:
        raise ValueError(f"the prompt ({len(prompt_ids)} tokens) exceeds max_seq_len={limit}")
    capacity = min(len(prompt_ids) + max(max_new_tokens - 1, 0), limit)  # the last token is never fed back
    was_training = model.training
    model.eval()
    caches = model.new_kv_caches(1, capacity)
    try:
        logits_BSV = model(torch.tensor([prompt_ids], device=device), kv_caches=caches).logits_BSV
        new: list[int] = []
        for _ in range(max_new_tokens):
            token = sample_top_p(logits_BSV[0, -1], top_p, temperature, generator)
            new.append(token)
            if token == eos_id or len(new) == max_new_tokens or caches[0].length >= capacity:
                break
            logits_BSV = model(torch.tensor([[token]], device=device), kv_caches=caches).logits_BSV
    finally:
        model.train(was_training)
    return new
