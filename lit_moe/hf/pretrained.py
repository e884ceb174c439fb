"""Continue training a Hugging Face checkpoint: what ``LanguageModelingModule(init_from_hf=...)`` calls.

The architecture comes from the folder's ``config.json``; the training-side fields below come from
the YAML ``model.init_args.config`` (so an imported OLMoE can be continued under ``router: default``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lit_moe.errors import UserInputError
from lit_moe.hf.load import init_buffers, load_weights_into, prepare
from lit_moe.hf.upcycle import UpcycleSpec, load_upcycled_into, upcycled_config
from lit_moe.model import MoETransformer, MoETransformerConfig

# Fields of MoETransformerConfig that a checkpoint does not decide.
TRAINING_FIELDS = ("router", "default_beta", "default_mode", "aux_loss_coef", "z_loss_coef", "bias_update_rate",
                   "backend", "init_std")


def pretrained_config(folder: str | None, yaml_config: MoETransformerConfig,
                      tokenizer_vocab_size: int | None = None,
                      upcycle: UpcycleSpec | None = None) -> MoETransformerConfig:
    """The folder's architecture (upcycled to an MoE with ``upcycle``) with the YAML's training-side
    fields (``TRAINING_FIELDS``)."""
    if folder is None:
        raise UserInputError("model.init_args.upcycle needs model.init_args.init_from_hf (a dense llama/qwen3 folder)")
    overrides = {name: getattr(yaml_config, name) for name in TRAINING_FIELDS}
    if upcycle is not None:
        _, _, dense = prepare(folder)
        config = upcycled_config(dense, upcycle, **overrides)
    else:
        _, _, config = prepare(folder, overrides)
    if tokenizer_vocab_size is not None and tokenizer_vocab_size > config.vocab_size:
        raise UserInputError(f"the tokenizer has {tokenizer_vocab_size} tokens but {folder} has vocab_size "
                             f"{config.vocab_size}: use the folder's tokenizer (--data.init_args.tokenizer {folder})")
    return config


def check_tokenizer(folder: str, datamodule: Any) -> None:
    """The datamodule must tokenize with the folder's tokenizer when the folder ships one."""
    spec = getattr(datamodule, "tokenizer_spec", None)
    own = Path(folder) / "tokenizer.json"
    if spec is None or not own.is_file():
        return
    spec_path = Path(spec)
    chosen = spec_path / "tokenizer.json" if spec_path.is_dir() else spec_path
    if not chosen.exists() or chosen.resolve() != own.resolve():
        raise UserInputError(f"the data is tokenized with {spec!r} but the pretrained model {folder} ships its own "
                             f"tokenizer: set --data.init_args.tokenizer {folder}")


def build_from_hf(folder: str, config: MoETransformerConfig, parallelize: Callable[[MoETransformer], MoETransformer],
                  device: torch.device, upcycle: UpcycleSpec | None = None) -> MoETransformer:
    """Meta-build, shard (``parallelize``: FSDP2 or a no-op), materialise empty, stream the weights
    (as copies of the dense MLPs with ``upcycle``)."""
    with torch.device("meta"):
        model = MoETransformer(config)
    model = parallelize(model)
    model.to_empty(device=device)
    model.tie_weights()
    init_buffers(model)
    if upcycle is not None:
        load_upcycled_into(model, folder, upcycle)
    else:
        load_weights_into(model, folder)
    return model
