"""The frozen parts of a text-to-video diffusion model: UNet, text encoder, tokenizer, VAE, scheduler.

Loaded from a local diffusers-format folder (ModelScope / ZeroScope ``UNet3DConditionModel`` or
AnimateDiff ``UNetMotionModel``), or built tiny and random from config for tests and the CPU demo.
Nothing is ever downloaded.

Shape legend: B batch, C channels, F frames, H/W height/width, L prompt tokens, D text width.
"""

from __future__ import annotations

import json
import os
import string
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional

import torch
from torch import nn

from lit_video.dit.config import TinyDiTConfig
from lit_video.errors import VideoInputError

UnetKind = Literal["unet3d", "motion"]
ModelFamily = Literal["unet", "wan", "cogvideox", "latte"]


@dataclass
class TinyComponentsConfig:
    """Sizes of the tiny random components (spec §4): ≈ 1.3 M UNet parameters at the defaults.

    Args:
        unet_kind: ``unet3d`` (ModelScope/ZeroScope layout) or ``motion`` (AnimateDiff layout).
        block_out_channels: UNet channels per resolution level.
        layers_per_block: Resnet/attention layers per UNet block.
        norm_num_groups: GroupNorm groups of UNet and VAE.
        attention_head_dim: UNet attention head width.
        text_width: Text-encoder hidden size = UNet cross-attention width.
        text_layers: Text-encoder transformer layers.
        max_prompt_tokens: Tokenizer/text-encoder context length.
        vae_block_out_channels: VAE channels per level; the spatial downsampling factor is
            2 ** (levels - 1).
        latent_channels: VAE latent channels.
        num_train_timesteps: Training-timestep axis length T.
        prediction_type: What the UNet predicts: ``epsilon`` or ``v_prediction``.
        seed: Seed of the random initialisation (the same seed rebuilds the same base model, so
            a LoRA-only checkpoint resumes correctly).
    """

    unet_kind: UnetKind = "unet3d"
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    attention_head_dim: int = 8
    text_width: int = 32
    text_layers: int = 2
    max_prompt_tokens: int = 32
    vae_block_out_channels: tuple[int, ...] = (32, 64)
    latent_channels: int = 4
    num_train_timesteps: int = 1000
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    seed: int = 0


@dataclass
class ComponentsSpec:
    """Where the base model comes from.

    Args:
        pretrained_path: Local diffusers-format folder with ``unet/``, ``vae/``, ``text_encoder/``,
            ``tokenizer/`` and ``scheduler/`` (e.g. a saved ``cerspense/zeroscope_v2_576w`` or an
            AnimateDiff pipeline). ``None`` builds tiny random components from ``tiny``.
        motion_adapter_path: AnimateDiff only: local ``MotionAdapter`` folder, used when
            ``pretrained_path/unet`` holds a plain ``UNet2DConditionModel`` (a Stable Diffusion
            folder) rather than a saved ``UNetMotionModel``.
        tiny: Sizes of the random components when ``pretrained_path`` is ``None``.
        family: ``unet`` (ModelScope/ZeroScope/AnimateDiff) or a DiT: ``wan`` (Wan 2.1/2.2, flow
            matching), ``cogvideox`` (v-prediction DDIM) or ``latte``. With ``pretrained_path`` a folder
            holding ``transformer/`` is recognised from its config, whatever this says.
        tiny_dit: Sizes of the random DiT components (``family`` != ``unet``, no ``pretrained_path``).
        flow_shift: Flow models: the static shift s of the noise schedule; ``None`` reads it from the
            folder's scheduler config (``flow_shift`` / ``shift``), or ``tiny_dit.flow_shift``.
    """

    pretrained_path: Optional[str] = None
    motion_adapter_path: Optional[str] = None
    tiny: TinyComponentsConfig = field(default_factory=TinyComponentsConfig)
    family: ModelFamily = "unet"
    tiny_dit: TinyDiTConfig = field(default_factory=TinyDiTConfig)
    flow_shift: Optional[float] = None


class VideoDiffusionComponents(nn.Module):
    """Holds the (frozen) model parts and the one call that differs between UNet kinds."""

    def __init__(self, unet: nn.Module, text_encoder: nn.Module, vae: nn.Module, tokenizer, scheduler,
                 unet_kind: UnetKind) -> None:
        super().__init__()
        self.unet = unet
        self.text_encoder = text_encoder
        self.vae = vae
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        self.unet_kind = unet_kind

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    @property
    def prediction_type(self) -> str:
        return str(self.scheduler.config.prediction_type)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def freeze(self) -> None:
        for module in (self.unet, self.text_encoder, self.vae):
            module.requires_grad_(False)
        self.text_encoder.eval()
        self.vae.eval()

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Text embeddings (B, L, D) for a list of prompts."""
        max_length = min(int(self.tokenizer.model_max_length), self.text_encoder.config.max_position_embeddings)
        tokens = self.tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True,
                                return_tensors="pt")
        device = next(self.text_encoder.parameters()).device
        return self.text_encoder(tokens.input_ids.to(device))[0]

    @torch.no_grad()
    def encode_video(self, video_BCFHW: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] (B, 3, F, H, W) → scaled latents (B, c, F, h, w): the posterior mean."""
        B, _, F, H, W = video_BCFHW.shape
        frames = video_BCFHW.permute(0, 2, 1, 3, 4).reshape(B * F, 3, H, W).to(self.vae.dtype)
        latents = self.vae.encode(frames).latent_dist.mode() * self.vae.config.scaling_factor
        return latents.reshape(B, F, *latents.shape[1:]).permute(0, 2, 1, 3, 4)

    @torch.no_grad()
    def decode_latents(self, latents_BCFHW: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, c, F, h, w) → pixels in [-1, 1] (B, 3, F, H, W), frame by frame."""
        B, c, F, h, w = latents_BCFHW.shape
        flat = latents_BCFHW.permute(0, 2, 1, 3, 4).reshape(B * F, c, h, w).to(self.vae.dtype)
        frames = torch.cat([self.vae.decode(chunk / self.vae.config.scaling_factor).sample
                            for chunk in flat.split(8)])
        return frames.reshape(B, F, *frames.shape[1:]).permute(0, 2, 1, 3, 4).clamp(-1, 1)

    def predict(self, latents_BCFHW: torch.Tensor, timesteps_B: torch.Tensor, text_BLD: torch.Tensor) -> torch.Tensor:
        """The UNet's raw output (ε or v, per ``prediction_type``) with the same shape as the latents."""
        if self.unet_kind == "motion":  # UNetMotionModel wants one prompt copy per frame: (B·F, L, D)
            text_BLD = text_BLD.repeat_interleave(latents_BCFHW.shape[2], dim=0)
        return self.unet(latents_BCFHW, timesteps_B, encoder_hidden_states=text_BLD).sample


def ddim_scheduler(num_train_timesteps: int = 1000, prediction_type: str = "epsilon"):
    """ModelScope's scheduler (spec §4): DDIM, scaled_linear 0.00085→0.012, steps_offset 1."""
    from diffusers import DDIMScheduler  # noqa: PLC0415 (diffusers, heavy and optional at import)

    return DDIMScheduler(num_train_timesteps=num_train_timesteps, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                         steps_offset=1, prediction_type=prediction_type)


def tiny_clip_tokenizer(max_length: int, directory: Optional[str] = None):
    """A real ``CLIPTokenizer`` over a character vocabulary (no merges), written offline."""
    from transformers import CLIPTokenizer  # noqa: PLC0415 (transformers, heavy)

    directory = Path(directory) if directory else Path(tempfile.gettempdir()) / "lit_video" / "tiny_clip_tokenizer"
    directory.mkdir(parents=True, exist_ok=True)
    symbols = list(string.ascii_lowercase + string.digits + ".,!?'-")
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    for name, text in (("vocab.json", json.dumps(vocab)), ("merges.txt", "#version: 0.2\n")):
        partial = directory / f"{name}.{os.getpid()}.partial"  # atomic: parallel runs share the folder
        partial.write_text(text)
        os.replace(partial, directory / name)
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"),
                         pad_token="<|endoftext|>", model_max_length=max_length)


def tiny_unet(config: TinyComponentsConfig) -> nn.Module:
    from diffusers import UNet3DConditionModel, UNetMotionModel  # noqa: PLC0415 (diffusers, heavy and optional at import)

    common = dict(block_out_channels=config.block_out_channels, layers_per_block=config.layers_per_block,
                  norm_num_groups=config.norm_num_groups, cross_attention_dim=config.text_width,
                  in_channels=config.latent_channels, out_channels=config.latent_channels)
    levels = len(config.block_out_channels)
    if config.unet_kind == "unet3d":
        return UNet3DConditionModel(
            attention_head_dim=config.attention_head_dim,
            down_block_types=("CrossAttnDownBlock3D",) * (levels - 1) + ("DownBlock3D",),
            up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * (levels - 1), **common)
    return UNetMotionModel(
        num_attention_heads=config.block_out_channels[0] // config.attention_head_dim,
        motion_num_attention_heads=config.block_out_channels[0] // config.attention_head_dim,
        motion_max_seq_length=32,
        down_block_types=("CrossAttnDownBlockMotion",) * (levels - 1) + ("DownBlockMotion",),
        up_block_types=("UpBlockMotion",) + ("CrossAttnUpBlockMotion",) * (levels - 1), **common)


def build_tiny_components(config: TinyComponentsConfig, tokenizer_factory: Optional[Callable[[int], object]] = None,
                          vae_scaling_factor: Optional[float] = None) -> VideoDiffusionComponents:
    """Random components from config; the same ``seed`` always gives the same weights.

    ``tokenizer_factory(max_prompt_tokens)`` replaces the tiny CLIP tokenizer (the toy world's word-level
    one); the text encoder is sized to its vocabulary. ``vae_scaling_factor`` overrides diffusers' default
    latent scaling (the toy world sets it after training its VAE)."""
    from diffusers import AutoencoderKL  # noqa: PLC0415 (diffusers, heavy and optional at import)
    from transformers import CLIPTextConfig, CLIPTextModel  # noqa: PLC0415 (transformers, heavy)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        unet = tiny_unet(config)
        tokenizer = (tokenizer_factory or tiny_clip_tokenizer)(config.max_prompt_tokens)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=config.text_width, intermediate_size=2 * config.text_width,
            num_hidden_layers=config.text_layers, num_attention_heads=max(1, config.text_width // 16),
            max_position_embeddings=config.max_prompt_tokens, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
        levels = len(config.vae_block_out_channels)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=config.latent_channels,
                            block_out_channels=config.vae_block_out_channels, layers_per_block=1,
                            norm_num_groups=config.norm_num_groups,
                            down_block_types=("DownEncoderBlock2D",) * levels,
                            up_block_types=("UpDecoderBlock2D",) * levels,
                            **({} if vae_scaling_factor is None else {"scaling_factor": vae_scaling_factor}))
    scheduler = ddim_scheduler(config.num_train_timesteps, config.prediction_type)
    return VideoDiffusionComponents(unet, text_encoder, vae, tokenizer, scheduler, config.unet_kind)


def _unet_class_name(folder: Path) -> str:
    config_file = folder / "unet" / "config.json"
    if not config_file.is_file():
        raise VideoInputError(f"{folder} has no unet/config.json: point components.pretrained_path at a "
                              "diffusers-format folder (the output of pipeline.save_pretrained)")
    return json.loads(config_file.read_text()).get("_class_name", "")


def load_pretrained_components(path: str, motion_adapter_path: Optional[str] = None) -> VideoDiffusionComponents:
    """Loads from a local diffusers folder; the scheduler is converted to DDIM (our sampler)."""
    from diffusers import (  # noqa: PLC0415 (diffusers, heavy and optional at import)
        AutoencoderKL,
        DDIMScheduler,
        MotionAdapter,
        UNet2DConditionModel,
        UNet3DConditionModel,
        UNetMotionModel,
    )
    from transformers import AutoTokenizer, CLIPTextModel  # noqa: PLC0415 (transformers, heavy)

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise VideoInputError(f"components.pretrained_path {folder} is not a folder: download the checkpoint "
                              "on a machine with network access (e.g. `hf download cerspense/zeroscope_v2_576w "
                              "--local-dir DIR`) and point the config at DIR")
    unet_class = _unet_class_name(folder)
    if unet_class == "UNet3DConditionModel":
        unet, kind = UNet3DConditionModel.from_pretrained(folder, subfolder="unet"), "unet3d"
    elif unet_class == "UNetMotionModel":
        unet, kind = UNetMotionModel.from_pretrained(folder, subfolder="unet"), "motion"
    elif unet_class == "UNet2DConditionModel" and motion_adapter_path:
        unet2d = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
        unet = UNetMotionModel.from_unet2d(unet2d, MotionAdapter.from_pretrained(motion_adapter_path))
        kind = "motion"
    else:
        raise VideoInputError(
            f"{folder}/unet is a {unet_class or 'unknown model'}: expected UNet3DConditionModel (ModelScope/"
            "ZeroScope), UNetMotionModel (AnimateDiff), or UNet2DConditionModel together with "
            "components.motion_adapter_path")
    scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
    return VideoDiffusionComponents(
        unet, CLIPTextModel.from_pretrained(folder, subfolder="text_encoder"),
        AutoencoderKL.from_pretrained(folder, subfolder="vae"),
        AutoTokenizer.from_pretrained(folder, subfolder="tokenizer"), scheduler, kind)


def build_components(spec: ComponentsSpec) -> VideoDiffusionComponents:
    """Tiny random components, or a local checkpoint folder; all weights frozen."""
    from lit_video.dit.registry import build_dit_components, folder_dit_family  # noqa: PLC0415 (import cycle: the DiT files import this one)

    family = folder_dit_family(spec.pretrained_path) if spec.pretrained_path else spec.family
    if family not in (None, "unet"):
        components = build_dit_components(spec, family)
    elif spec.pretrained_path:
        components = load_pretrained_components(spec.pretrained_path, spec.motion_adapter_path)
    else:
        components = build_tiny_components(spec.tiny)
    components.freeze()
    return components
