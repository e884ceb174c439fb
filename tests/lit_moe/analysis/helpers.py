"""Builders shared by the analysis tests: tiny models, a seconds-long training loop, checkpoints in
the layout ``cli.py fit`` writes (``state_dict`` keys ``model.*``, the config in ``hyper_parameters``)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from lit_moe.data.corpus import builtin_documents, split_documents
from lit_moe.data.tokenizers import ByteTokenizer
from lit_moe.model import MoETransformer, MoETransformerConfig


def tiny_config(**overrides) -> MoETransformerConfig:
    values = dict(vocab_size=257, d_model=32, n_layers=2, n_heads=2, max_seq_len=64, num_experts=4, top_k=2,
                  d_expert=32, router="topk", aux_loss_coef=0.01, backend="loop")
    values.update(overrides)
    return MoETransformerConfig(**values)


def random_model(config: MoETransformerConfig, seed: int = 0, scale: float = 1.0) -> MoETransformer:
    """A deterministic untrained model; ``scale`` > 1 makes routing and expert outputs non-trivial."""
    torch.manual_seed(seed)
    model = MoETransformer(config)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.mul_(scale)
        for layer in model.moe_layers().values():
            layer.router.weight_ED.normal_(std=1.0)
            layer.default_vectors_ED.normal_(std=0.5)
    return model.eval()


def docs_training_stream() -> torch.Tensor:
    train, _ = split_documents(builtin_documents(["docs"]), 0.1)
    tokens = []
    for ids in ByteTokenizer().encode_batch(train[:40]):
        tokens.extend(ids + [256])
    return torch.tensor(tokens)


def train_tiny_lm(config: MoETransformerConfig, steps: int = 60, seq_len: int = 32, batch: int = 16,
                  seed: int = 0) -> MoETransformer:
    """Next-token training on the built-in docs (train split) for a few seconds on CPU."""
    torch.manual_seed(seed)
    model = MoETransformer(config)
    stream = docs_training_stream()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        starts = torch.randint(0, stream.numel() - seq_len - 1, (batch,), generator=generator)
        window = torch.stack([stream[s : s + seq_len + 1] for s in starts.tolist()])
        output = model(window[:, :-1])
        loss = F.cross_entropy(output.logits_BSV.flatten(0, 1), window[:, 1:].flatten()) + output.auxiliary_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def save_checkpoint(model: MoETransformer, path: Path) -> Path:
    """The parts of a Lightning checkpoint of ``LanguageModelingModule`` that the analyses read."""
    state = {f"model.{key}": value for key, value in model.state_dict().items()}
    config = asdict(model.config)
    torch.save({"state_dict": state, "hyper_parameters": {"config": config, "tokenizer_vocab_size": 257}}, path)
    return path
