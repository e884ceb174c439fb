"""Export ``MoETransformer`` to a Hugging Face folder that ``AutoModelForCausalLM.from_pretrained`` loads.

Layout of the chosen family as the Hub stores it (per-expert tensors), sharded safetensors with an
index, ``config.json``, the tokenizer files, and our Default-MoE state (default vectors and balancing
biases) in ``default_moe_state.safetensors`` beside the weights (transformers ignores that file;
``load_hf`` restores it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from lit_moe.errors import UserInputError
from lit_moe.hf.families import family_for_config
from lit_moe.hf.folder import DEFAULT_STATE_NAME, INDEX_NAME, SINGLE_NAME
from lit_moe.hf.keymap import Entry, build_entries, shared_expert_fillers
from lit_moe.model import MoETransformer
from lit_moe.model.config import MoETransformerConfig

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "generation_config.json", "chat_template.jinja")


def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    text = size.strip().upper()
    for suffix, factor in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3), ("B", 1)):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


def _full(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def read_slice(tensor: torch.Tensor, entry: Entry) -> torch.Tensor:
    """The HF tensor of ``entry`` from our (full) parameter."""
    if entry.expert is not None:
        value = tensor[entry.expert].t()
    elif entry.rows is not None:
        value = tensor[entry.rows[0]:entry.rows[1]]
    else:
        value = tensor
    if entry.scale != 1.0:
        value = value * entry.scale
    return value


def write_hf_config(config: MoETransformerConfig, family, folder: Path, dtype: torch.dtype) -> None:
    from transformers import AutoConfig  # noqa: PLC0415 (optional, heavy import)

    hf = AutoConfig.for_model(family.model_type, **family.hf_config(config))
    hf.architectures = [family.architecture]
    hf.dtype = dtype
    hf.save_pretrained(folder)


@torch.no_grad()
def save_state_dict_hf(state: dict[str, torch.Tensor], config: MoETransformerConfig, folder: str | Path,
                       family: str | None = None, tokenizer: str | Path | None = None,
                       dtype: torch.dtype | None = None, max_shard_size: int | str = "5GB") -> Path:
    """Write the folder from our state dict (names as in ``MoETransformer.state_dict()``)."""
    chosen = family_for_config(config, family)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    gate_ours = config.shared_expert_gate
    entries = build_entries(config, chosen, shared_gate_ours=gate_ours)
    missing = sorted({e.param for e in entries} - state.keys())
    if missing:
        raise UserInputError(f"the state dict lacks {missing[0]} for a model of this config (+{len(missing) - 1} more)")
    first = state[entries[0].param]
    dtype = dtype or first.dtype
    limit = _parse_size(max_shard_size)
    written: list[tuple[Path, list[str]]] = []  # temporary shard files, renamed once their count is known
    shard: dict[str, torch.Tensor] = {}
    size = total = 0

    def write_shard() -> None:
        nonlocal shard, size
        path = out / f".shard-{len(written):05d}.tmp"
        save_file(shard, str(path), metadata={"format": "pt"})
        written.append((path, list(shard)))
        shard, size = {}, 0

    current_name, current = None, None
    for entry in entries:
        if entry.param != current_name:  # one (gathered) parameter at a time
            current_name, current = entry.param, _full(state[entry.param])
        value = read_slice(current, entry).to(dtype).contiguous().clone()
        nbytes = value.numel() * value.element_size()
        if shard and size + nbytes > limit:
            write_shard()
        shard[entry.hf_key] = value
        size, total = size + nbytes, total + nbytes
    for key, shape in shared_expert_fillers(config, chosen, gate_ours).items():
        shard[key] = torch.zeros(shape, dtype=dtype)
    write_shard()
    names = ([SINGLE_NAME] if len(written) == 1 else
             [f"model-{i + 1:05d}-of-{len(written):05d}.safetensors" for i in range(len(written))])
    weight_map = {}
    for name, (path, keys) in zip(names, written):
        path.replace(out / name)
        weight_map.update({key: name for key in keys})
    if len(written) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / INDEX_NAME).write_text(json.dumps(index, indent=2))
    default_state = {k: _full(v).float().contiguous().clone() for k, v in state.items()
                     if k.endswith(("default_vectors_ED", "expert_bias_E"))}
    if default_state:
        save_file(default_state, str(out / DEFAULT_STATE_NAME),
                  metadata={"router": config.router, "default_beta": str(config.default_beta)})
    write_hf_config(config, chosen, out, dtype)
    if tokenizer is not None:
        copy_tokenizer(tokenizer, out)
    return out


def copy_tokenizer(source: str | Path, out: Path) -> None:
    source = Path(source)
    if source.is_file():
        shutil.copy(source, out / ("tokenizer.json" if source.suffix == ".json" else source.name))
        return
    if not source.is_dir():
        raise UserInputError(f"tokenizer {source} is neither a tokenizer.json nor a folder")
    copied = [shutil.copy(source / name, out / name) for name in TOKENIZER_FILES if (source / name).is_file()]
    if not copied:
        raise UserInputError(f"{source} contains no tokenizer files ({', '.join(TOKENIZER_FILES[:4])}, ...)")


def save_hf(model: nn.Module, folder: str | Path, family: str | None = None,
            tokenizer: str | Path | None = None, dtype: torch.dtype | None = None,
            max_shard_size: int | str = "5GB") -> Path:
    """Export ``model`` (an ``MoETransformer``) as a Hugging Face folder.

    Args:
        model: The model (plain or FSDP2-sharded: each parameter is gathered in turn).
        folder: Output folder (created).
        family: ``mixtral``, ``olmoe``, ``qwen2_moe``, ``qwen3_moe``, ``llama`` or ``qwen3``; ``None``
            picks the first that represents the model exactly (a from-scratch model without q/k norm
            becomes Qwen2-MoE with ``qkv_bias: false``; with per-head q/k norm Qwen3-MoE).
        tokenizer: A tokenizer folder (e.g. the imported checkpoint) or ``tokenizer.json`` to copy.
        dtype: On-disk dtype (default: the parameters').
        max_shard_size: Largest shard, bytes or ``"5GB"``-style.
    """
    if not isinstance(model, MoETransformer):
        raise UserInputError(f"save_hf expects an MoETransformer, got {type(model).__name__}")
    return save_state_dict_hf(model.state_dict(), model.config, folder, family, tokenizer, dtype, max_shard_size)
