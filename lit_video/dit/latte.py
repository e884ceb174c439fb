"""Latte: ``LatteTransformer3DModel`` (alternating spatial and temporal transformer blocks, ε-prediction
with a learned variance half that sampling drops), a per-frame 2-D ``AutoencoderKL``, T5 text encoder,
a DDPM-type scheduler (DDIM sampling and inversion, window t ≥ t*).

Latte has temporal blocks, so the UNets' recipe ports directly: ``latte_temporal`` puts the LoRA on
their attention. ``LattePipeline`` has no LoRA loader in diffusers 0.42: ``lit_video.lora.
load_lora_with_diffusers`` loads our file into a plain ``LatteTransformer3DModel`` with diffusers' own
``load_lora_adapter``.

Shape legend: B batch, C channels, F frames, H/W height/width, L prompt tokens, D text width.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lit_video.components import ddim_scheduler, tiny_clip_tokenizer
from lit_video.dit.base import DiTComponents
from lit_video.dit.config import TinyDiTConfig
from lit_video.errors import VideoInputError


class LatteComponents(DiTComponents):
    """Latte's parts; the VAE works frame by frame (the parent's ``encode_video`` / ``decode_latents``)."""

    def __init__(self, transformer: nn.Module, text_encoder: nn.Module, vae: nn.Module, tokenizer, scheduler,
                 max_prompt_tokens: int) -> None:
        super().__init__(transformer, text_encoder, vae, tokenizer, scheduler, "latte",
                         2 ** (len(vae.config.block_out_channels) - 1), 1)
        self.max_prompt_tokens = max_prompt_tokens

    encode_video = DiTComponents.__mro__[1].encode_video  # VideoDiffusionComponents' per-frame 2-D VAE
    decode_latents = DiTComponents.__mro__[1].decode_latents

    def check_frames(self, num_frames: int) -> None:
        """Latte's temporal position embedding is fixed: clips need exactly ``video_length`` frames."""
        length = int(self.unet.config.video_length)
        if num_frames != length:
            raise VideoInputError(f"this Latte model takes exactly {length} frames (its video_length), got "
                                  f"{num_frames}: set data.init_args.num_frames to {length}")

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """T5 states (B, L, D) with the padding zeroed (``LattePipeline.encode_prompt``'s ``mask_feature``)."""
        return self.padding_zeroed_states(prompts)

    def predict(self, latents_BCFHW: torch.Tensor, timesteps_B: torch.Tensor, text_BLD: torch.Tensor) -> torch.Tensor:
        """ε (the first half of the channels when the model also learns the variance)."""
        if latents_BCFHW.shape[2] != 1:  # one frame is Latte's image mode (no temporal position embedding)
            self.check_frames(latents_BCFHW.shape[2])
        dtype = next(self.unet.parameters()).dtype
        output = self.unet(hidden_states=latents_BCFHW.to(dtype), timestep=timesteps_B.long(),
                           encoder_hidden_states=text_BLD.to(dtype), return_dict=False)[0]
        channels = latents_BCFHW.shape[1]
        return output[:, :channels] if output.shape[1] == 2 * channels else output


def build_tiny_latte(config: TinyDiTConfig) -> LatteComponents:
    from diffusers import AutoencoderKL, LatteTransformer3DModel  # noqa: PLC0415 (diffusers, heavy and optional at import)
    from transformers import T5Config, T5EncoderModel  # noqa: PLC0415 (transformers, heavy)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        tokenizer = tiny_clip_tokenizer(config.max_prompt_tokens)
        transformer = LatteTransformer3DModel(
            sample_size=8, num_layers=config.num_layers, patch_size=2, attention_head_dim=config.attention_head_dim,
            num_attention_heads=config.num_attention_heads, caption_channels=config.text_width, in_channels=4,
            cross_attention_dim=config.num_attention_heads * config.attention_head_dim, out_channels=8,
            attention_bias=True, activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
            norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6, video_length=4)
        text_encoder = T5EncoderModel(T5Config(
            vocab_size=len(tokenizer), d_model=config.text_width, d_kv=max(4, config.text_width // 4),
            d_ff=2 * config.text_width, num_layers=config.text_layers, num_heads=4, relative_attention_num_buckets=8,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id))
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8),
                            layers_per_block=1, norm_num_groups=2, down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2)
    return LatteComponents(transformer, text_encoder, vae, tokenizer, ddim_scheduler(config.num_train_timesteps),
                           config.max_prompt_tokens)


def load_latte(folder: Path, max_prompt_tokens: int = 120) -> LatteComponents:
    """Latte from a local folder (``maxin-cn/Latte-1`` layout); its scheduler is converted to DDIM."""
    from diffusers import AutoencoderKL, DDIMScheduler, LatteTransformer3DModel  # noqa: PLC0415 (diffusers, heavy and optional at import)
    from transformers import AutoTokenizer, T5EncoderModel  # noqa: PLC0415 (transformers, heavy)

    return LatteComponents(
        LatteTransformer3DModel.from_pretrained(folder, subfolder="transformer"),
        T5EncoderModel.from_pretrained(folder, subfolder="text_encoder"),
        AutoencoderKL.from_pretrained(folder, subfolder="vae"),
        AutoTokenizer.from_pretrained(folder, subfolder="tokenizer"),
        DDIMScheduler.from_pretrained(folder, subfolder="scheduler"), max_prompt_tokens)
