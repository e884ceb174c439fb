"""Export a Lightning checkpoint of ``LanguageModelingModule`` (a ``.ckpt`` file, or the directory of
a sharded FSDP2 distributed checkpoint) as a Hugging Face folder.

    python -m lit_moe.hf runs/moe_tiny/checkpoints/last.ckpt exported/ [--family qwen2_moe] [--tokenizer DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lit_moe.errors import UserInputError
from lit_moe.hf.load import init_buffers
from lit_moe.hf.save import save_hf
from lit_moe.model import MoETransformer, MoETransformerConfig


def _config_from(meta: dict) -> MoETransformerConfig:
    if "lit_moe_config" in meta:  # written by LanguageModelingModule.on_save_checkpoint
        return MoETransformerConfig(**meta["lit_moe_config"])
    hparams = meta.get("hyper_parameters", {})
    config = hparams.get("config")
    if config is None:
        raise UserInputError("the checkpoint has no model config (not saved by LanguageModelingModule?)")
    config = config if isinstance(config, MoETransformerConfig) else MoETransformerConfig(**dict(config))
    if config.vocab_size is None:
        config = MoETransformerConfig(**{**config.__dict__, "vocab_size": hparams.get("tokenizer_vocab_size")})
    return config


def model_from_checkpoint(path: str | Path) -> MoETransformer:
    """Rebuild the trained ``MoETransformer`` from a Lightning checkpoint (file or sharded directory)."""
    path = Path(path)
    if path.is_dir():  # ModelParallelStrategy (FSDP2) distributed checkpoint + meta.pt
        import torch.distributed.checkpoint as dcp  # noqa: PLC0415 (distributed piece, only for sharded dirs)

        meta_file = path / "meta.pt"
        if not meta_file.is_file():
            raise UserInputError(f"{path} is a directory but not a Lightning distributed checkpoint (no meta.pt)")
        meta = torch.load(meta_file, map_location="cpu", weights_only=False)
        with torch.device("meta"):
            model = MoETransformer(_config_from(meta))
        model.to_empty(device="cpu")
        model.tie_weights()
        init_buffers(model)
        state = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}
        dcp.load(state, checkpoint_id=str(path), no_dist=True)  # reads straight into the model's tensors
        return model
    if not path.is_file():
        raise UserInputError(f"checkpoint {path} does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    with torch.device("meta"):
        model = MoETransformer(_config_from(checkpoint))
    state = {k[len("model."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state, assign=True)
    model.tie_weights()
    for module in model.modules():  # non-persistent RoPE frequencies are not in the checkpoint
        if hasattr(module, "rope_inv_freq"):
            module.rope_inv_freq = torch.empty_like(module.rope_inv_freq, device="cpu")
            module.reset_rope()
    return model


def export_checkpoint(checkpoint: str | Path, folder: str | Path, family: str | None = None,
                      tokenizer: str | Path | None = None, dtype: torch.dtype | None = None,
                      max_shard_size: int | str = "5GB") -> Path:
    """Write a Hugging Face folder (see ``save_hf``) from a Lightning checkpoint."""
    return save_hf(model_from_checkpoint(checkpoint), folder, family, tokenizer, dtype, max_shard_size)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("folder")
    parser.add_argument("--family", default=None)
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder or tokenizer.json to copy")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--max-shard-size", default="5GB")
    args = parser.parse_args(argv)
    try:
        out = export_checkpoint(args.checkpoint, args.folder, args.family, args.tokenizer,
                                getattr(torch, args.dtype) if args.dtype else None, args.max_shard_size)
    except UserInputError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"wrote {out}")
