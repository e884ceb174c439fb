"""Apply parallelism from outside the model (torchtitan style): activation checkpointing wraps each
transformer block, then FSDP2 ``fully_shard`` shards each (wrapped) block over the data-parallel mesh.

Activation checkpointing is one mechanism for every strategy: ``LanguageModelingModule(
activation_checkpointing=True)`` wraps the blocks here (also under Lightning's FSDPStrategy, whose
``activation_checkpointing_policy`` the shipped configs therefore leave unset).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointImpl, checkpoint_wrapper
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from lit_moe.model.transformer import MoETransformer


def apply_activation_checkpointing(model: MoETransformer) -> MoETransformer:
    """Recompute each block in the backward pass (non-reentrant; state-dict keys are unchanged)."""
    for index, block in enumerate(model.blocks):
        model.blocks[index] = checkpoint_wrapper(block, checkpoint_impl=CheckpointImpl.NO_REENTRANT)
    return model


def parallelize(model: MoETransformer, device_mesh=None, activation_checkpointing: bool = False,
                param_dtype: Optional[torch.dtype] = None) -> MoETransformer:
    """Wrap blocks for activation checkpointing, then shard with FSDP2 (one unit per block, plus the
    root) when a device mesh is given. ``param_dtype`` (e.g. bf16) enables FSDP2's mixed-precision
    policy (fp32 reductions)."""
    if activation_checkpointing:
        apply_activation_checkpointing(model)
    if device_mesh is None:
        return model
    mesh = device_mesh["data_parallel"] if device_mesh.mesh_dim_names else device_mesh
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32) if param_dtype \
        else MixedPrecisionPolicy()
    for block in model.blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


@contextmanager
def unsharded(module: nn.Module) -> Iterator[nn.Module]:
    """Temporarily gather an FSDP2 unit's full parameters (no-op for unsharded modules)."""
    if isinstance(module, FSDPModule):
        module.unshard()
        try:
            yield module
        finally:
            module.reshard()
    else:
        yield module
