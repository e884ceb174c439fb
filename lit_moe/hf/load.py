"""Import a local Hugging Face folder into ``MoETransformer``, streaming shard by shard.

The model is built on the meta device, materialised empty, and every HF tensor is copied straight
into its slice of our parameters (``keymap.Entry``); nothing is initialised twice and no second copy
of the weights is held. Works on FSDP2-sharded (DTensor) parameters: each rank reads the shards and
keeps the rows it owns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from lit_moe.errors import UserInputError
from lit_moe.hf.families import Family, family_for
from lit_moe.hf.folder import DEFAULT_STATE_NAME, CheckpointFolder, read_folder
from lit_moe.hf.keymap import Entry, build_entries, shared_expert_fillers
from lit_moe.model import MoELayer, MoETransformer, MoETransformerConfig
from lit_moe.model.layers import CausalSelfAttention


def config_from_folder(folder: str | Path, **overrides: Any) -> MoETransformerConfig:
    """Our architecture for a HF folder; ``overrides`` set training-side fields (router, backend, ...)."""
    checkpoint = read_folder(folder)
    return _config(checkpoint, family_for(checkpoint.model_type), overrides)


def _config(checkpoint: CheckpointFolder, family: Family, overrides: dict) -> MoETransformerConfig:
    fields = family.config_fields(checkpoint.hf_config())
    return MoETransformerConfig(**{**fields, **overrides})


def validate(checkpoint: CheckpointFolder, entries: list[Entry], params: dict[str, torch.Tensor],
             family: Family, config: MoETransformerConfig) -> None:
    """Every expected tensor present with the right shape, nothing unmapped: one error line otherwise."""
    expected = {e.hf_key for e in entries}
    for key, shape in shared_expert_fillers(config, family, config.shared_expert_gate).items():
        if key in checkpoint.tensors and checkpoint.tensors[key][1] == tuple(shape):
            expected.add(key)  # a width-0 Qwen2-MoE shared expert: nothing to load
    for entry in entries:
        if entry.hf_key not in checkpoint.tensors:
            raise UserInputError(f"{checkpoint.path}: tensor {entry.hf_key} is missing (a {family.model_type} "
                                 "checkpoint of this config.json needs it)")
        shape = checkpoint.tensors[entry.hf_key][1]
        want = entry.hf_shape(tuple(params[entry.param].shape))
        if shape != want:
            raise UserInputError(f"{checkpoint.path}: tensor {entry.hf_key} has shape {list(shape)}, expected "
                                 f"{list(want)} from config.json")
    unexpected = [k for k in checkpoint.tensors if k not in expected and not k.endswith(family.ignored_keys)
                  and not (k == "lm_head.weight" and "embed.weight" in params and _tied_ok(checkpoint))]
    if unexpected:
        more = f" (+{len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise UserInputError(f"{checkpoint.path}: tensor {unexpected[0]} is not part of a {family.model_type} model "
                             f"of this config.json{more}")


def _tied_ok(checkpoint: CheckpointFolder) -> bool:
    return bool(checkpoint.raw_config.get("tie_word_embeddings", False))


def model_params(model: nn.Module) -> dict[str, torch.Tensor]:
    tensors = dict(model.named_parameters())
    tensors.update({name: buf for name, buf in model.named_buffers()
                    if name.endswith(("default_vectors_ED", "expert_bias_E"))})
    return tensors


@torch.no_grad()
def write_slice(param: torch.Tensor, entry: Entry, hf_tensor: torch.Tensor) -> None:
    """param[rows] = hf_tensor (transposed per expert); on a DTensor only the locally held rows."""
    value = hf_tensor
    if entry.expert is not None:
        value, lo = value.t().unsqueeze(0), entry.expert
    else:
        lo = entry.rows[0] if entry.rows is not None else 0
    if entry.scale != 1.0:
        value = value / entry.scale
    hi = lo + value.shape[0]
    local, offset = _local_rows(param)
    start, stop = max(lo, offset), min(hi, offset + local.shape[0])
    if start < stop:
        local[start - offset:stop - offset].copy_(value[start - lo:stop - lo])


def _local_rows(param: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The locally stored tensor and the global index of its first row (FSDP2 shards dim 0)."""
    if hasattr(param, "to_local") and hasattr(param, "device_mesh"):
        from torch.distributed.tensor._utils import (  # noqa: PLC0415 (distributed piece, only for DTensors)
            compute_local_shape_and_global_offset,
        )

        _, offset = compute_local_shape_and_global_offset(param.shape, param.device_mesh, param.placements)
        if any(o != 0 for o in offset[1:]):
            raise NotImplementedError("only dim-0 sharding (FSDP2) is supported when loading HF weights")
        return param.to_local(), int(offset[0]) if len(offset) else 0
    return param, 0


@torch.no_grad()
def stream_weights(model: nn.Module, checkpoint: CheckpointFolder, entries: list[Entry]) -> None:
    """Copy every HF tensor into its slice, one shard file at a time."""
    params = model_params(model)
    by_shard: dict[Path, list[Entry]] = {}
    for entry in entries:
        by_shard.setdefault(checkpoint.tensors[entry.hf_key][0], []).append(entry)
    for shard in checkpoint.shards:
        with safe_open(str(shard), framework="pt") as handle:
            for entry in by_shard.get(shard, []):
                write_slice(params[entry.param], entry, handle.get_tensor(entry.hf_key))
    state_file = checkpoint.path / DEFAULT_STATE_NAME
    if state_file.is_file():
        with safe_open(str(state_file), framework="pt") as handle:
            for key in handle.keys():
                if key in params:
                    write_slice(params[key], Entry(key, key), handle.get_tensor(key))


@torch.no_grad()
def init_buffers(model: nn.Module) -> None:
    """Non-weight state after ``to_empty``: RoPE frequencies, zero Default-MoE vectors and biases."""
    for module in model.modules():
        if isinstance(module, CausalSelfAttention):
            module.reset_rope()
        elif isinstance(module, MoELayer):
            module.default_vectors_ED.zero_()
            module.router.expert_bias_E.zero_()


def prepare(folder: str | Path, overrides: dict | None = None) -> tuple[CheckpointFolder, Family, MoETransformerConfig]:
    checkpoint = read_folder(folder)
    family = family_for(checkpoint.model_type)
    return checkpoint, family, _config(checkpoint, family, overrides or {})


def load_weights_into(model: MoETransformer, folder: str | Path, checkpoint: CheckpointFolder | None = None) -> None:
    """Validate the folder against ``model``'s config, then stream its weights into ``model`` (which may
    be FSDP2-sharded and materialised with ``to_empty``)."""
    checkpoint = checkpoint or read_folder(folder)
    family = family_for(checkpoint.model_type)
    entries = build_entries(model.config, family, shared_gate_ours=model.config.shared_expert_gate)
    validate(checkpoint, entries, model_params(model), family, model.config)
    stream_weights(model, checkpoint, entries)


def load_hf(folder: str | Path, dtype: torch.dtype | None = None, device: str | torch.device = "cpu",
            **overrides: Any) -> MoETransformer:
    """Build ``MoETransformer`` from a local Hugging Face folder (``config.json`` + safetensors, sharded
    with an index or a single file) and load its weights.

    Args:
        folder: The model folder (as written by ``save_pretrained`` / downloaded from the Hub).
        dtype: Parameter dtype; ``None`` keeps fp32 (training master weights). The Default-MoE
            buffers stay fp32 regardless.
        device: Where the parameters live.
        overrides: ``MoETransformerConfig`` fields that are not part of the checkpoint (``router``,
            ``default_beta``, ``aux_loss_coef``, ``backend``, ...).
    """
    checkpoint, family, config = prepare(folder, overrides)
    entries = build_entries(config, family, shared_gate_ours=config.shared_expert_gate)
    with torch.device("meta"):
        model = MoETransformer(config)
    validate(checkpoint, entries, model_params(model), family, model.config)  # before any weight is read
    if dtype is not None:
        model.to(dtype)  # on meta: no fp32 copy is ever allocated (the router state stays fp32)
    model.to_empty(device=device)
    model.tie_weights()
    init_buffers(model)
    stream_weights(model, checkpoint, entries)
    return model
