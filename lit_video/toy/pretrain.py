"""Pretraining the tiny text-to-video model of the toy world from scratch (``configs/video/toy_pretrain.yaml``).

Two phases in one run, both plain MSE:
1. steps [0, ``vae_steps``): the tiny ``AutoencoderKL`` learns to reconstruct toy frames (posterior
   mean in, pixels out); at the switch its ``scaling_factor`` is set to 1 / std of the latents.
2. the rest: the tiny ``UNet3DConditionModel`` and the tiny CLIP text encoder learn ε-prediction on
   the (frozen) VAE latents of fresh toy clips, t ~ U[0, T−1], ModelScope's DDIM schedule, after a
   linear warm-up of the learning rate. Options (all three on in ``configs/video/toy_pretrain.yaml``,
   whose output is the shipped model; see docs/video.md "Toy world"): the min-SNR-γ loss weight (Hang
   et al., 2023: min(SNR, γ) / SNR, so the many low-noise steps do not drown the high-noise ones where
   colour, position and motion are decided), a cosine decay of the learning rate, and Lightning's
   ``EMAWeightAveraging`` callback (``on_train_end`` copies the averaged weights in before
   ``ExportToyModel`` writes them).

``ExportToyModel`` writes the result as a diffusers-format folder (unet/, vae/, text_encoder/,
tokenizer/, scheduler/, model_index.json) that ``components.pretrained_path`` loads.

Shape legend: B batch, C channels, F frames, H/W height/width.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from lit_video.components import (
    ComponentsSpec,
    TinyComponentsConfig,
    VideoDiffusionComponents,
    build_components,
    build_tiny_components,
)
from lit_video.toy.tokenizer import toy_tokenizer
from lit_video.toy.world import ToyWorld


def build_toy_components(config: TinyComponentsConfig) -> VideoDiffusionComponents:
    """Untrained toy components: the tiny components of ``config`` with the word-level toy tokenizer
    (the text encoder sized to its vocabulary) and a VAE whose latent scaling starts at 1 (set from the
    latents' std after the VAE phase)."""
    return build_tiny_components(config, tokenizer_factory=toy_tokenizer, vae_scaling_factor=1.0)


class ToyClips(Dataset):
    """``length`` toy clips; item i is drawn from ``ToyWorld(seed + i)``, so the data are reproducible."""

    def __init__(self, length: int, seed: int, num_frames: int, height: int, width: int,
                 drop_direction_probability: float, drop_prompt_probability: float) -> None:
        self.length, self.seed = length, seed
        self.kwargs = dict(num_frames=num_frames, height=height, width=width,
                           drop_direction_probability=drop_direction_probability,
                           drop_prompt_probability=drop_prompt_probability)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        frames_FHW3, prompt, _ = ToyWorld(self.seed * 1_000_003 + index, **self.kwargs).sample()
        video_CFHW = torch.from_numpy(np.ascontiguousarray(frames_FHW3)).permute(3, 0, 1, 2).float() / 127.5 - 1
        return {"video": video_CFHW, "prompt": prompt}


class ToyClipsDataModule(pl.LightningDataModule):
    """Fresh toy clips for pretraining.

    Args:
        num_clips: Clips per epoch (steps per epoch = num_clips / batch_size).
        batch_size: Clips per optimizer step.
        seed: Seed of the clip stream.
        num_frames: Frames per clip.
        height: Frame height in pixels (a multiple of 8).
        width: Frame width in pixels (a multiple of 8).
        drop_direction_probability: Fraction of prompts without the direction word.
        drop_prompt_probability: Fraction of empty prompts (for classifier-free guidance).
    """

    def __init__(self, num_clips: int = 100_000, batch_size: int = 8, seed: int = 0, num_frames: int = 8,
                 height: int = 32, width: int = 32, drop_direction_probability: float = 0.25,
                 drop_prompt_probability: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(ToyClips(h.num_clips, h.seed, h.num_frames, h.height, h.width, h.drop_direction_probability,
                                   h.drop_prompt_probability), batch_size=h.batch_size, shuffle=False)


class ToyPretrainModule(pl.LightningModule):
    """Trains the toy components from scratch: the VAE first, then UNet + text encoder.

    Args:
        tiny: Sizes of the toy model (UNet, text encoder, VAE, timesteps).
        vae_steps: Optimizer steps of the VAE phase (reconstruction); later steps train the diffusion model.
        vae_learning_rate: AdamW learning rate of the VAE phase.
        vae_clips_per_step: Clips of each batch whose frames the VAE phase reconstructs.
        learning_rate: AdamW learning rate of the diffusion phase (UNet + text encoder).
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warmup of the diffusion phase, in steps.
        max_grad_norm: Global gradient-norm clip of each phase.
        min_snr_gamma: γ of the min-SNR loss weight min(SNR, γ) / SNR; ``None``: plain MSE (weight 1).
        final_learning_rate_ratio: The diffusion phase's learning rate decays along a cosine from
            ``learning_rate`` to this fraction of it at ``trainer.max_steps`` (1: constant after warm-up).
        init_from: A toy diffusers folder (an earlier export) to continue from instead of random
            weights; with ``vae_steps: 0`` its VAE and latent scale are kept as they are.
    """

    def __init__(self, tiny: TinyComponentsConfig = TinyComponentsConfig(), vae_steps: int = 300,  # noqa: B008
                 vae_learning_rate: float = 2e-3, vae_clips_per_step: int = 2, learning_rate: float = 1e-3,
                 weight_decay: float = 0.0,
                 warmup_steps: int = 100, max_grad_norm: float = 1.0, min_snr_gamma: Optional[float] = None,
                 final_learning_rate_ratio: float = 1.0, init_from: Optional[str] = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.components = build_toy_components(tiny)
        if init_from:
            self.load_weights(init_from)
        self._steps_done = 0  # training steps so far (the phase switch; restored from checkpoints)

    def configure_optimizers(self):
        c = self.components
        vae = torch.optim.AdamW(c.vae.parameters(), lr=self.hparams.vae_learning_rate)
        diffusion = torch.optim.AdamW(list(c.unet.parameters()) + list(c.text_encoder.parameters()),
                                      lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay)
        return [vae, diffusion]

    def _step(self, optimizer, loss: torch.Tensor, parameters, learning_rate: float) -> None:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        torch.nn.utils.clip_grad_norm_(parameters, self.hparams.max_grad_norm)
        optimizer.step()

    def vae_loss(self, video_BCFHW: torch.Tensor) -> torch.Tensor:
        B, C, Fr, H, W = video_BCFHW.shape
        frames = video_BCFHW.permute(0, 2, 1, 3, 4).reshape(B * Fr, C, H, W)
        vae = self.components.vae
        return F.mse_loss(vae.decode(vae.encode(frames).latent_dist.mode()).sample, frames)

    def diffusion_loss(self, video_BCFHW: torch.Tensor, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.components
        with torch.no_grad():
            latents = c.encode_video(video_BCFHW)
        tokens = c.tokenizer(prompts, padding="max_length", max_length=c.tokenizer.model_max_length, truncation=True,
                             return_tensors="pt").input_ids.to(latents.device)
        text = c.text_encoder(tokens)[0]
        timesteps = torch.randint(0, c.num_train_timesteps, (latents.shape[0],), device=latents.device)
        noise = torch.randn_like(latents)
        prediction = c.predict(c.scheduler.add_noise(latents, noise, timesteps), timesteps, text)
        per_clip_B = F.mse_loss(prediction, noise, reduction="none").flatten(1).mean(1)
        return (per_clip_B * self.loss_weight(timesteps)).mean(), timesteps

    def loss_weight(self, timesteps_B: torch.Tensor) -> torch.Tensor:
        """min(SNR(t), γ) / SNR(t) per clip (ε-prediction's min-SNR-γ weight); ones without ``min_snr_gamma``."""
        if self.hparams.min_snr_gamma is None:
            return torch.ones(timesteps_B.shape, device=timesteps_B.device)
        alpha_bar_B = self.components.scheduler.alphas_cumprod.to(timesteps_B.device)[timesteps_B].float()
        snr_B = alpha_bar_B / (1 - alpha_bar_B)
        return snr_B.clamp(max=self.hparams.min_snr_gamma) / snr_B

    def diffusion_learning_rate(self, step: int) -> float:
        """Linear warm-up over ``warmup_steps``, then a cosine decay to ``final_learning_rate_ratio`` ×
        ``learning_rate`` at the trainer's last step."""
        h = self.hparams
        step = step - h.vae_steps
        if step < h.warmup_steps:
            return h.learning_rate * (step + 1) / h.warmup_steps
        max_steps = self.trainer.max_steps if self._trainer is not None else -1
        span = max(1, max_steps - h.vae_steps - h.warmup_steps) if max_steps > 0 else None
        if span is None:
            return h.learning_rate
        progress = min(1.0, (step - h.warmup_steps) / span)
        final = h.final_learning_rate_ratio
        return h.learning_rate * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress)))

    @torch.no_grad()
    def set_latent_scale(self, video_BCFHW: torch.Tensor) -> float:
        """scaling_factor = 1 / std of the VAE latents (the diffusion phase then sees unit variance)."""
        vae = self.components.vae
        vae.register_to_config(scaling_factor=1.0)
        scale = 1.0 / float(self.components.encode_video(video_BCFHW).std())
        vae.register_to_config(scaling_factor=scale)
        return scale

    def training_step(self, batch: dict, batch_idx: int) -> None:
        vae_optimizer, diffusion_optimizer = self.optimizers()
        step = self._steps_done
        h = self.hparams
        if step < h.vae_steps:
            loss = self.vae_loss(batch["video"][:h.vae_clips_per_step])
            self._step(vae_optimizer, loss, self.components.vae.parameters(), h.vae_learning_rate)
            self.log("train/vae_loss", loss.detach(), prog_bar=True)
        else:
            if step == h.vae_steps and h.vae_steps > 0:
                self.components.vae.requires_grad_(False)
                self.log("train/latent_scale", self.set_latent_scale(batch["video"]))
            loss, timesteps = self.diffusion_loss(batch["video"], list(batch["prompt"]))
            rate = self.diffusion_learning_rate(step)
            parameters = list(self.components.unet.parameters()) + list(self.components.text_encoder.parameters())
            self._step(diffusion_optimizer, loss, parameters, rate)
            self.log("train/loss", loss.detach(), prog_bar=True)
            self.log("train/lr", rate)
        self._steps_done += 1


    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["toy_steps_done"] = self._steps_done

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._steps_done = int(checkpoint.get("toy_steps_done", 0))

    def load_weights(self, folder: str | Path) -> None:
        """Copies UNet, VAE (with its latent scale) and text-encoder weights from a toy export (as float32),
        read by the same loader as ``components.pretrained_path`` (so either UNet kind loads)."""
        exported = build_components(ComponentsSpec(pretrained_path=str(folder)))
        for name in ("unet", "vae", "text_encoder"):
            weights = getattr(exported, name).state_dict()
            getattr(self.components, name).load_state_dict({k: v.float() for k, v in weights.items()})
        self.components.vae.register_to_config(scaling_factor=exported.vae.config.scaling_factor)

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype = torch.float16) -> Path:
        """The diffusers-format folder ``components.pretrained_path`` loads; weights stored in ``dtype``."""
        folder = Path(folder)
        c = self.components
        for name, module in (("unet", c.unet), ("vae", c.vae), ("text_encoder", c.text_encoder)):
            original = next(module.parameters()).dtype
            module.to(dtype).save_pretrained(folder / name, safe_serialization=True)
            module.to(original)
        c.tokenizer.save_pretrained(folder / "tokenizer")
        c.scheduler.save_pretrained(folder / "scheduler")
        pipeline = "TextToVideoSDPipeline" if c.unet_kind == "unet3d" else "AnimateDiffPipeline"
        (folder / "model_index.json").write_text(json.dumps({
            "_class_name": pipeline, "_diffusers_version": "0.42.1",
            "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "PreTrainedTokenizerFast"], "unet": ["diffusers", type(c.unet).__name__],
            "vae": ["diffusers", "AutoencoderKL"]}, indent=2))
        return folder


class ExportToyModel(pl.Callback):
    """Writes the pretrained toy model as a diffusers folder when fit ends.

    Args:
        output_dir: Target folder; ``None``: ``<log dir>/toy_t2v``.
        dtype: Stored weight precision (``float16`` keeps the shipped model under 5 MB).
    """

    def __init__(self, output_dir: Optional[str] = None, dtype: str = "float16") -> None:
        self.output_dir, self.dtype = output_dir, getattr(torch, dtype)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: ToyPretrainModule) -> None:
        if trainer.is_global_zero:
            root = trainer.logger.log_dir if trainer.logger is not None else trainer.default_root_dir
            pl_module.save_pretrained(self.output_dir or Path(root) / "toy_t2v", self.dtype)
