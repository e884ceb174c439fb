"""LoRA on a chosen part of the video UNet (peft), switching it on and off, and saving it.

Target presets select ``nn.Linear`` layers (and, for ``temporal_layers``, UNet3D's temporal
``nn.Conv3d`` layers) by module-name regex, for both UNet kinds:

=================  ======================================================================
preset             layers
=================  ======================================================================
temporal_attn      q/k/v/out of attn1 and attn2 of the temporal transformers (default)
temporal_attn1     q/k/v/out of attn1 of the temporal transformers
temporal_all       every linear of the temporal transformers (proj_in/out, attention, FF)
temporal_layers    temporal_all plus UNet3D's temporal convolutions (``temp_convs``, kernel
                   3×1×1 over frames; AnimateDiff has none, so there it equals temporal_all)
spatial_all        every linear of the spatial transformers (MotionDirector's spatial LoRA)
=================  ======================================================================

Why ``temporal_layers`` exists: diffusers' ``UNet3DConditionModel`` builds its temporal transformers
without frame positions, so attention over frames is equivariant to reordering them and a LoRA on it
alone cannot tell "right" from "left"; the temporal convolutions are the layers that know frame order
(measured on the toy model, docs/video.md "Toy world").

DiTs (Wan, CogVideoX, Latte: chosen by the model's class) have their own table, ``DIT_PRESET_PATTERNS``:

=================  ======================================================================
preset             layers
=================  ======================================================================
self_attn          q/k/v/out of every block's attn1 (full 3-D self-attention; Wan, CogVideoX)
self_attn_qk       q/k of every block's attn1 (changes who attends to whom, keeps values)
latte_temporal     q/k/v/out of Latte's temporal blocks' attention
temporal_all       baseline's temporal adapter: every attn1 linear (Latte: temporal blocks)
spatial_all        baseline's spatial adapter: attn2 + feed-forward (Latte: spatial blocks)
=================  ======================================================================

The ``motion_director`` recipe uses two adapters: ``spatial`` (spatial_all) and ``temporal``
(temporal_all). In both UNet3D transformer kinds attn1 and attn2 of a temporal block are
self-attention over frames (spec §4).
"""

from __future__ import annotations

import contextlib
import json
import re
import warnings
from pathlib import Path
from typing import Iterator, Literal, Optional

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from lit_video.errors import VideoInputError

LoraPreset = Literal["temporal_attn", "temporal_attn1", "temporal_all", "temporal_layers", "spatial_all"]

# Temporal transformers: UNet3D's transformer_in and temp_attentions.N; AnimateDiff's motion_modules.N.
_TEMPORAL = r"(?:^|.*\.)(?:transformer_in|temp_attentions\.\d+|motion_modules\.\d+)"
_SPATIAL = r"(?:^|.*\.)attentions\.\d+"
_ATTN_PROJ = r"(?:to_q|to_k|to_v|to_out\.0)"
# UNet3D TemporalConvLayer: convN = Sequential(norm, act, [dropout,] Conv3d)
_TEMPORAL_CONV = r"(?:^|.*\.)temp_convs\.\d+\.conv\d\.\d+"

PRESET_PATTERNS: dict[str, str] = {
    "temporal_attn": _TEMPORAL + r"\.transformer_blocks\.\d+\.attn[12]\." + _ATTN_PROJ,
    "temporal_attn1": _TEMPORAL + r"\.transformer_blocks\.\d+\.attn1\." + _ATTN_PROJ,
    "temporal_all": _TEMPORAL + r"\..+",
    "temporal_layers": f"{_TEMPORAL}\\..+|{_TEMPORAL_CONV}",
    "spatial_all": _SPATIAL + r"\..+",
}


_DIT_BLOCK = r"(?:blocks|transformer_blocks)\.\d+"  # Wan: blocks.N; CogVideoX / Latte spatial: transformer_blocks.N
DIT_PRESET_PATTERNS: dict[str, dict[str, str]] = {
    "wan_cogvideox": {
        "self_attn": _DIT_BLOCK + r"\.attn1\." + _ATTN_PROJ,
        "self_attn_qk": _DIT_BLOCK + r"\.attn1\.(?:to_q|to_k)",
        "temporal_all": _DIT_BLOCK + r"\.attn1\..+",
        "spatial_all": _DIT_BLOCK + r"\.(?:attn2|ffn|ff)\..+",
    },
    "latte": {
        "self_attn": r"(?:transformer_blocks|temporal_transformer_blocks)\.\d+\.attn1\." + _ATTN_PROJ,
        "self_attn_qk": r"(?:transformer_blocks|temporal_transformer_blocks)\.\d+\.attn1\.(?:to_q|to_k)",
        "latte_temporal": r"temporal_transformer_blocks\.\d+\.attn1\." + _ATTN_PROJ,
        "temporal_all": r"temporal_transformer_blocks\.\d+\..+",
        "spatial_all": r"transformer_blocks\.\d+\..+",
    },
}
_DIT_CLASSES = {"WanTransformer3DModel": "wan_cogvideox", "CogVideoXTransformer3DModel": "wan_cogvideox",
                "LatteTransformer3DModel": "latte"}


def preset_patterns(model: nn.Module) -> dict[str, str]:
    """The preset table for ``model``: a DiT's own (by class, subclasses included), else the UNets'."""
    for cls in type(model).__mro__:
        if cls.__name__ in _DIT_CLASSES:
            return DIT_PRESET_PATTERNS[_DIT_CLASSES[cls.__name__]]
    return PRESET_PATTERNS


LORA_LAYER_TYPES = (nn.Linear, nn.Conv3d)  # what a preset may select (only temporal_layers matches Conv3d)


def target_module_names(model: nn.Module, preset: str) -> list[str]:
    """Names of the ``nn.Linear`` (and temporal ``nn.Conv3d``) layers of ``model`` that ``preset`` selects."""
    patterns = preset_patterns(model)
    if preset not in patterns:
        known = set(PRESET_PATTERNS).union(*DIT_PRESET_PATTERNS.values())
        what = f"LoRA target preset {preset!r} does not apply to" if preset in known else \
            f"unknown LoRA target preset {preset!r} for"
        raise VideoInputError(f"{what} {type(model).__name__}: use one of {sorted(patterns)}")
    pattern = re.compile(patterns[preset])
    return [name for name, module in model.named_modules()
            if isinstance(module, LORA_LAYER_TYPES) and pattern.fullmatch(name)]


def inject_lora(model: nn.Module, preset: str, adapter_name: str, rank: int, alpha: Optional[float] = None,
                dropout: float = 0.0) -> list[str]:
    """Adds a LoRA adapter (B = 0 at init, so outputs are unchanged) to the preset's layers.

    Returns the wrapped layer names. Only the new adapter's parameters require gradients.
    """
    from peft import LoraConfig, inject_adapter_in_model  # noqa: PLC0415 (peft, heavy)

    names = target_module_names(model, preset)
    if not names:
        raise VideoInputError(f"LoRA preset {preset!r} matches no linear layer of {type(model).__name__}")
    config = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, lora_dropout=dropout,
                        target_modules=names, init_lora_weights=True)
    with warnings.catch_warnings():  # "multiple adapters": intended for the spatial + temporal baseline
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        inject_adapter_in_model(config, model, adapter_name=adapter_name)
    for layer in lora_layers(model):  # peft activates only the newest adapter model-wide: keep every one on
        layer.set_adapter(list(layer.lora_A.keys()))
    own = set(map(id, lora_parameters(model, adapter_name)))
    for name, parameter in model.named_parameters():
        if id(parameter) in own:
            parameter.requires_grad_(True)
        elif ".lora_A." not in name and ".lora_B." not in name:  # base weights; other adapters keep theirs
            parameter.requires_grad_(False)
    return names


def lora_layers(model: nn.Module, adapter_name: Optional[str] = None) -> Iterator[nn.Module]:
    """peft tuner layers of ``model`` (optionally only those carrying ``adapter_name``)."""
    from peft.tuners.tuners_utils import BaseTunerLayer  # noqa: PLC0415 (peft, heavy)

    for module in model.modules():
        if isinstance(module, BaseTunerLayer) and (adapter_name is None or adapter_name in module.lora_A):
            yield module


def lora_parameters(model: nn.Module, adapter_name: str) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters()
            if f".lora_A.{adapter_name}." in n or f".lora_B.{adapter_name}." in n]


def lora_is_enabled(model: nn.Module, adapter_name: Optional[str] = None) -> bool:
    """True if any tuner layer (of ``adapter_name``) currently applies its adapters."""
    return any(not layer.disable_adapters for layer in lora_layers(model, adapter_name))


@contextlib.contextmanager
def lora_enabled(model: nn.Module, enabled: bool, adapter_name: Optional[str] = None):
    """Switches the LoRA layers (of one adapter) on or off inside the block, restoring state after.

    peft's ``enable_adapters`` also flips ``requires_grad``; that is restored too, so toggling
    during training or sampling never changes what the optimizer trains.
    """
    layers = list(lora_layers(model, adapter_name))
    was_disabled = [layer.disable_adapters for layer in layers]
    requires_grad = {p: p.requires_grad for layer in layers for p in layer.parameters()}
    try:
        for layer in layers:
            layer.enable_adapters(enabled)
        yield
    finally:
        for layer, disabled in zip(layers, was_disabled):
            layer.enable_adapters(not disabled)
        for parameter, flag in requires_grad.items():
            parameter.requires_grad_(flag)


def lora_state_dict(model: nn.Module, adapter_name: str, prefix: str = "unet") -> dict[str, torch.Tensor]:
    """The adapter's weights under diffusers' peft-format keys: ``unet.<layer>.lora_A.weight``."""
    state = {}
    for name, tensor in model.state_dict().items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}.{adapter_name}."
            if marker in name:
                state[f"{prefix}.{name.replace(marker, f'.{part}.')}"] = tensor.detach().cpu().contiguous()
    return state


def save_lora_safetensors(model: nn.Module, adapter_names: list[str], path: str | Path, prefix: str = "unet",
                          extra_metadata: Optional[dict] = None) -> Path:
    """Writes the adapters (merged into one file) as ``pytorch_lora_weights.safetensors``-style weights.

    Keys and metadata follow diffusers' own writer (``unet.``-prefixed peft keys; rank, alpha and
    targets under ``lora_adapter_metadata``), so ``AnimateDiffPipeline.load_lora_weights``,
    ``UNetMotionModel.load_lora_adapter`` and ``lora_state_dict`` read it; for UNet3D use
    ``load_lora_with_diffusers``. ``extra_metadata`` (t*, recipe) is stored as JSON under ``lit_video``.
    """

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state, targets, rank, alpha = {}, [], None, None
    for adapter_name in adapter_names:
        state.update(lora_state_dict(model, adapter_name, prefix))
        for layer in lora_layers(model, adapter_name):
            rank = layer.r[adapter_name]
            alpha = layer.lora_alpha[adapter_name]
    targets = sorted({key[len(prefix) + 1:].rsplit(".lora_", 1)[0] for key in state})
    config = {"r": rank, "lora_alpha": alpha, "target_modules": targets, "init_lora_weights": True}
    metadata = {"format": "pt", "lora_adapter_metadata": json.dumps(
        {f"{prefix}.{key}": value for key, value in config.items()}, sort_keys=True)}
    if extra_metadata:  # the recipe (t*, window rule) under our own key, ignored by diffusers
        metadata["lit_video"] = json.dumps(extra_metadata, sort_keys=True)
    save_file(state, str(path), metadata=metadata)
    return path


def load_lora_with_diffusers(unet: nn.Module, path: str | Path, adapter_name: str = "default",
                             prefix: str = "unet") -> nn.Module:
    """Loads our safetensors into a plain diffusers UNet with diffusers' own ``load_lora_adapter``.

    ``UNetMotionModel`` (AnimateDiff) has the loader; ``UNet3DConditionModel`` (ModelScope /
    ZeroScope) and ``LatteTransformer3DModel`` lack ``PeftAdapterMixin`` in diffusers 0.42, so the
    class is extended with it in place (same weights, same forward). DiT files use ``prefix="transformer"``.
    """
    from diffusers.loaders.peft import PeftAdapterMixin  # noqa: PLC0415 (diffusers, heavy and optional at import)

    if not isinstance(unet, PeftAdapterMixin):
        unet.__class__ = type(f"{type(unet).__name__}WithAdapters", (type(unet), PeftAdapterMixin), {})
    path = Path(path)
    unet.load_lora_adapter(str(path.parent), weight_name=path.name, prefix=prefix, adapter_name=adapter_name)
    return unet


def read_lora_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and the parsed metadata (``lora_adapter_metadata`` and our ``lit_video`` entry) of a
    LoRA safetensors file written by ``save_lora_safetensors``."""

    path = Path(path)
    if not path.is_file():
        raise VideoInputError(f"LoRA file {path} does not exist: train one with `cli.py fit` (ExportLoRA callback) "
                              "or point lora_path at a run folder / pytorch_lora_weights.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        raw = handle.metadata() or {}
    metadata = {key: json.loads(value) for key, value in raw.items() if key in ("lora_adapter_metadata", "lit_video")}
    return load_file(str(path)), metadata


def load_lora_safetensors(model: nn.Module, path: str | Path, adapter_name: str = "temporal",
                          prefix: Optional[str] = None) -> dict:
    """Injects an adapter shaped like the file's (rank, alpha, targets from its metadata) into ``model``
    and loads the weights; returns the file's ``lit_video`` metadata (t*, recipe), or ``{}``.
    ``prefix`` ``None`` takes the file's own (``unet`` for the UNets, ``transformer`` for DiTs)."""
    state, metadata = read_lora_file(path)
    if prefix is None:
        prefix = next(iter(state), "unet.").split(".", 1)[0]
    adapter = metadata.get("lora_adapter_metadata", {})
    targets = adapter.get(f"{prefix}.target_modules")
    rank, alpha = adapter.get(f"{prefix}.r"), adapter.get(f"{prefix}.lora_alpha")
    if not targets or rank is None:
        raise VideoInputError(f"{path} has no lora_adapter_metadata (rank, targets): save it with "
                              "lit_video.lora.save_lora_safetensors or diffusers' LoRA writer")
    names = {name for name, module in model.named_modules() if isinstance(module, LORA_LAYER_TYPES)}
    missing = sorted(set(targets) - names)
    if missing:
        raise VideoInputError(f"{path} targets {len(missing)} layer(s) the base model lacks (e.g. {missing[0]}): "
                              "sample with the same base model the LoRA was trained on")
    from peft import LoraConfig, inject_adapter_in_model  # noqa: PLC0415 (peft, heavy)

    config = LoraConfig(r=int(rank), lora_alpha=float(alpha if alpha is not None else rank),
                        target_modules=list(targets), init_lora_weights=True)
    inject_adapter_in_model(config, model, adapter_name=adapter_name)
    own = {}
    for key, tensor in state.items():
        layer, part = key[len(prefix) + 1:].rsplit(".lora_", 1)
        own[f"{layer}.lora_{part.split('.')[0]}.{adapter_name}.weight"] = tensor
    result = model.load_state_dict(own, strict=False)
    if result.unexpected_keys:
        raise VideoInputError(f"{path} has weights that match no LoRA layer ({result.unexpected_keys[0]}): the file "
                              "does not belong to this base model")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return metadata.get("lit_video", {})
