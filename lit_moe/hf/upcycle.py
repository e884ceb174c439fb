"""Sparse upcycling: a dense Llama / Qwen3 folder -> an MoE whose experts start as copies of each MLP.

Shape legend: E copies, G granularity (pieces per MLP), D model width, F dense hidden width, C = F / G.

Every MLP becomes E * G experts: expert ``e * G + c`` is piece c (hidden units c*C .. (c+1)*C) of the
MLP, copy e, optionally perturbed by Gaussian noise of ``noise_std`` times the weight's own std
(seeded, identical on every rank). The router starts from N(0, router_init_std). With G = 1, no noise
and ``normalize_topk`` the selected weights sum to one, so y = sum_i w_i MLP(x) = MLP(x): the upcycled
model's logits equal the dense model's at step 0 (tested). With G > 1 a token mixes only K of the
E * G pieces, so step 0 is an approximation (as in fine-grained upcycling).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from lit_moe.errors import UserInputError
from lit_moe.hf.families import family_for
from lit_moe.hf.folder import CheckpointFolder, read_folder
from lit_moe.hf.keymap import Entry, build_entries
from lit_moe.hf.load import _config, init_buffers, model_params, validate, write_slice
from lit_moe.model import MoETransformer, MoETransformerConfig


@dataclass
class UpcycleSpec:
    """How to turn a dense model into an MoE.

    Args:
        num_experts: Copies E of each MLP (the MoE has E * granularity experts).
        top_k: Experts active per token.
        granularity: Split each MLP's hidden units into this many narrower experts (fine-grained).
        noise_std: Gaussian noise added to each copy, relative to the std of the copied weight; 0 = exact copies.
        router_init_std: Standard deviation of the router's initial weights.
        normalize_topk: Renormalise the selected weights to sum to 1 (needed for step-0 equality).
        dense_layers: Blocks that stay dense (all others become MoE).
        seed: Seed of the noise and the router initialisation.
    """

    num_experts: int = 8
    top_k: int = 2
    granularity: int = 1
    noise_std: float = 0.0
    router_init_std: float = 0.02
    normalize_topk: bool = True
    dense_layers: list[int] = field(default_factory=list)
    seed: int = 0


def upcycled_config(dense: MoETransformerConfig, spec: UpcycleSpec, **overrides) -> MoETransformerConfig:
    width = dense.dense_hidden
    if spec.granularity < 1 or width % spec.granularity:
        raise UserInputError(f"upcycle.granularity={spec.granularity} must divide the MLP width {width}")
    if dense.first_k_dense != dense.n_layers:
        raise UserInputError("upcycling needs a dense model (llama or qwen3 folder); this one has MoE layers")
    return dataclasses.replace(
        dense, num_experts=spec.num_experts * spec.granularity, top_k=spec.top_k, d_expert=width // spec.granularity,
        first_k_dense=0, dense_layers=list(spec.dense_layers), d_dense=width, normalize_topk=spec.normalize_topk,
        **overrides)


def _noise(shape, seed: int, layer: int, expert: int, kind: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(((seed * 1000 + layer) * 100000 + expert) * 3 + kind)
    return torch.randn(shape, generator=generator)


@torch.no_grad()
def load_upcycled_into(model: MoETransformer, folder: str | Path, spec: UpcycleSpec,
                       checkpoint: CheckpointFolder | None = None) -> None:
    """Stream a dense folder into the upcycled ``model`` (plain or FSDP2-sharded)."""
    checkpoint = checkpoint or read_folder(folder)
    family = family_for(checkpoint.model_type)
    dense_config = _config(checkpoint, family, {})
    entries = build_entries(dense_config, family, shared_gate_ours=False)
    with torch.device("meta"):
        dense_shapes = model_params(MoETransformer(dense_config))
    validate(checkpoint, entries, dense_shapes, family, dense_config)
    params = model_params(model)
    pieces, width = spec.granularity, model.config.d_expert
    names = {"gate": "w_gate_EDF", "up": "w_up_EDF", "down": "w_down_EFD"}
    for shard in checkpoint.shards:
        with safe_open(str(shard), framework="pt") as handle:
            for entry in entries:
                if checkpoint.tensors[entry.hf_key][0] != shard:
                    continue
                tensor = handle.get_tensor(entry.hf_key)
                parts = entry.param.split(".")  # blocks.{l}.mlp.{gate,up,down}.weight
                layer = int(parts[1]) if parts[0] == "blocks" else -1
                if layer < 0 or parts[2] != "mlp" or not model.config.is_moe_block(layer):
                    write_slice(params[entry.param], entry, tensor)
                    continue
                kind = parts[3]
                target = params[f"blocks.{layer}.mlp.experts.{names[kind]}"]
                std = tensor.float().std()
                for copy in range(spec.num_experts):
                    for piece in range(pieces):
                        cut = slice(piece * width, (piece + 1) * width)
                        value = tensor[:, cut] if kind == "down" else tensor[cut]  # HF layout [out, in]
                        expert = copy * pieces + piece
                        if spec.noise_std > 0:
                            value = value + spec.noise_std * std * _noise(value.shape, spec.seed, layer, expert,
                                                                           ("gate", "up", "down").index(kind))
                        write_slice(target, Entry(entry.hf_key, target_name(layer, kind), expert=expert), value)
    for layer in model.moe_layers():
        name = f"blocks.{layer}.mlp.router.weight_ED"
        shape = tuple(params[name].shape)
        generator = torch.Generator().manual_seed(spec.seed * 7919 + layer)
        weight = torch.randn(shape, generator=generator) * spec.router_init_std
        write_slice(params[name], Entry(name, name), weight)


def target_name(layer: int, kind: str) -> str:
    return f"blocks.{layer}.mlp.experts.{ {'gate': 'w_gate_EDF', 'up': 'w_up_EDF', 'down': 'w_down_EFD'}[kind]}"


def upcycle_hf(folder: str | Path, spec: UpcycleSpec | None = None, dtype: torch.dtype | None = None,
               **overrides) -> MoETransformer:
    """An MoE upcycled from a dense HF folder (see the module docstring); ``overrides`` set training-side
    config fields (router, aux_loss_coef, ...)."""
    spec = spec or UpcycleSpec()
    checkpoint = read_folder(folder)
    config = upcycled_config(_config(checkpoint, family_for(checkpoint.model_type), {}), spec, **overrides)
    with torch.device("meta"):
        model = MoETransformer(config)
    model.to_empty(device="cpu")
    model.tie_weights()
    if dtype is not None:
        model.to(dtype)
    init_buffers(model)
    load_upcycled_into(model, folder, spec, checkpoint)
    return model
