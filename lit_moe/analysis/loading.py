"""One entry point that turns a model source into an ``MoETransformer`` for the analyses.

Every analysis (MoE Lens, activation harvest) loads its model through ``load_language_model``, so a
new kind of source (e.g. an imported Hugging Face folder) is supported everywhere by adding one
branch here.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Optional

import torch

from lit_moe.errors import UserInputError
from lit_moe.model import MoETransformer, MoETransformerConfig


def _config_from_hparams(hparams: dict[str, Any], source: str) -> MoETransformerConfig:
    config = hparams.get("config")
    if config is None:
        raise UserInputError(f"{source} has no model config in its hyper_parameters: is it a checkpoint of "
                             "lit_moe.LanguageModelingModule?")
    if not isinstance(config, MoETransformerConfig):
        values = dict(config) if isinstance(config, dict) else dict(vars(config))
        known = {f.name for f in fields(MoETransformerConfig)}
        config = MoETransformerConfig(**{k: v for k, v in values.items() if k in known})
    if config.vocab_size is None:
        vocab = hparams.get("tokenizer_vocab_size")
        if vocab is None:
            raise UserInputError(f"{source}: the checkpoint records neither config.vocab_size nor "
                                 "tokenizer_vocab_size, so the embedding size is unknown")
        config = replace(config, vocab_size=vocab)
    return config


def load_lightning_checkpoint(path: Path, config_overrides: Optional[dict[str, Any]] = None) -> MoETransformer:
    """A ``.ckpt`` saved by ``cli.py fit`` with ``lit_moe.LanguageModelingModule`` (keys ``model.*``)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    config = _config_from_hparams(checkpoint.get("hyper_parameters", {}), str(path))
    if config_overrides:
        config = replace(config, **config_overrides)
    state = {key[len("model."):]: value for key, value in checkpoint.get("state_dict", {}).items()
             if key.startswith("model.")}
    if not state:
        raise UserInputError(f"{path} holds no 'model.*' weights (a sharded/distributed checkpoint? consolidate it "
                             "into one .ckpt first)")
    model = MoETransformer(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserInputError(f"{path} does not match its own config (overrides {config_overrides}): missing "
                             f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    return model.eval()


def load_language_model(source: str, config_overrides: Optional[dict[str, Any]] = None) -> MoETransformer:
    """Load the model an analysis runs on.

    Args:
        source: A Lightning ``.ckpt`` of ``lit_moe.LanguageModelingModule`` (e.g.
            ``runs/analysis_moe/checkpoints/last.ckpt``).
        config_overrides: ``MoETransformerConfig`` fields replaced before the weights are loaded
            (e.g. ``{"top_k": 1}``: the same weights run with one expert per token).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        raise UserInputError(
            f"{source} is a folder: lit_moe.analysis loads Lightning .ckpt files of lit_moe.LanguageModelingModule; "
            "convert a Hugging Face model to such a checkpoint first (or pass the .ckpt path)")
    if not path.is_file():
        raise UserInputError(f"model checkpoint {source} not found: pass the .ckpt written by `cli.py fit` "
                             "(e.g. runs/<name>/checkpoints/last.ckpt)")
    return load_lightning_checkpoint(path, config_overrides)
