"""LightningModule: one-shot motion customization with LoRA trained in the motion timesteps.

Recipes (``lora_preset``):
- ``temporal_attn`` / ``temporal_attn1`` / ``temporal_all`` / ``temporal_layers``: the
  timestep-constrained recipe (spec §2): LoRA on temporal layers only (``temporal_layers`` adds
  UNet3D's temporal convolutions, the only UNet3D layers that know frame order), t ~ U[t*, T−1],
  plain MSE to ε or v; at inference the LoRA applies only on steps with t ≥ t*.
- ``motion_director``: the baseline (spec §3): spatial LoRA trained on one random frame with the
  temporal LoRA off (the spatial path is skipped on a fraction of steps), temporal LoRA on every
  temporal linear trained on all frames with MSE + the appearance-debiased loss, t ~ U[0, T−1];
  each loss updates only its own adapter.

The base model is frozen and kept in eval mode; checkpoints hold only the LoRA weights (and the
optimizer state). Samples during fit and the diffusers-loadable safetensors export are callbacks
(``lit_video.callbacks.VideoSamples``, ``lit_video.callbacks.ExportLoRA``) that call ``sample`` and
``save_lora``; sampling a saved LoRA afterwards is ``lit_video.predict.LoRASampler``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from lit_video.components import ComponentsSpec, build_components
from lit_video.lora import inject_lora, lora_enabled, lora_parameters, save_lora_safetensors
from lit_video.sampling import LoraMode, generate_video, lora_schedule
from lit_video.timesteps import MotionWindowSampler, diffusion_target

Recipe = Literal["temporal_attn", "temporal_attn1", "temporal_all", "temporal_layers", "motion_director"]


@dataclass
class PathLoss:
    """One training path's loss and the only parameters it may update."""

    name: str
    loss: torch.Tensor
    parameters: list[torch.nn.Parameter]


def appearance_debiased_mse(prediction: torch.Tensor, target: torch.Tensor, anchor_frame: int) -> torch.Tensor:
    """MotionDirector's debiased loss: MSE of √2·x_i − x_a for prediction and target (frames on dim 2)."""
    def debias(x: torch.Tensor) -> torch.Tensor:
        return math.sqrt(2.0) * x - x[:, :, anchor_frame:anchor_frame + 1]

    return F.mse_loss(debias(prediction.float()), debias(target.float()))


class MotionCustomizationModule(pl.LightningModule):
    """Fine-tunes a frozen text-to-video model on one reference video with LoRA.

    Args:
        components: Base model: a local diffusers folder or tiny random components.
        lora_preset: ``temporal_attn`` (default: attn1+attn2 q/k/v/out of the temporal
            transformers), ``temporal_attn1``, ``temporal_all``, ``temporal_layers`` (every temporal
            linear and UNet3D's temporal convolutions; the toy world's recipe), or
            ``motion_director`` (the spatial + temporal baseline).
        lora_rank: LoRA rank r.
        lora_alpha: LoRA alpha (scale alpha / r); ``None`` uses r (scale 1).
        motion_boundary: t*, first timestep of the motion regime on the training axis 0..T−1
            (≈ 600 for ModelScope/ZeroScope with T = 1000; measure it with the probe).
        train_in_motion_window: Draw training timesteps from [t*, T−1] (True) or [0, T−1]
            (False). ``None``: True for the temporal presets, False for ``motion_director``.
        lora_in_motion_window_only: At sampling time apply the LoRA only on steps with t ≥ t*.
            ``None``: same default rule as ``train_in_motion_window``.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: Linear learning-rate warmup steps (then constant).
        max_grad_norm: Clip the LoRA gradients to this global norm; ``None`` disables clipping.
        cache_latents: Encode the reference video once and reuse the latents (the VAE posterior mean
            is used either way, so caching changes only speed).
        debias_loss_weight: ``motion_director`` only: weight of the appearance-debiased loss.
        spatial_path_skip_probability: ``motion_director`` only: fraction of steps without the
            spatial path.
        gradient_checkpointing: Recompute UNet activations in backward (real checkpoints at full
            resolution; slower, much less memory).
    """

    def __init__(
        self,
        components: ComponentsSpec = ComponentsSpec(),  # noqa: B008 (CLI schema default)
        lora_preset: Recipe = "temporal_attn",
        lora_rank: int = 32,
        lora_alpha: Optional[float] = None,
        motion_boundary: int = 600,
        train_in_motion_window: Optional[bool] = None,
        lora_in_motion_window_only: Optional[bool] = None,
        learning_rate: float = 5e-4,
        weight_decay: float = 1e-2,
        warmup_steps: int = 0,
        max_grad_norm: Optional[float] = 1.0,
        cache_latents: bool = True,
        debias_loss_weight: float = 1.0,
        spatial_path_skip_probability: float = 0.2,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False  # each path's loss updates only its own adapter
        self.strict_loading = False  # checkpoints hold the LoRA weights only
        self.components = build_components(components)
        self.components.eval()
        if gradient_checkpointing:
            self.components.unet.enable_gradient_checkpointing()
        is_baseline = lora_preset == "motion_director"
        self.window = MotionWindowSampler(
            self.components.num_train_timesteps, motion_boundary,
            restrict_to_window=(not is_baseline) if train_in_motion_window is None else train_in_motion_window)
        self.lora_in_window_only = ((not is_baseline) if lora_in_motion_window_only is None
                                    else lora_in_motion_window_only)
        unet = self.components.unet
        if is_baseline:
            inject_lora(unet, "spatial_all", "spatial", lora_rank, lora_alpha)
            inject_lora(unet, "temporal_all", "temporal", lora_rank, lora_alpha)
        else:
            inject_lora(unet, lora_preset, "temporal", lora_rank, lora_alpha)
        self.adapter_names = ["spatial", "temporal"] if is_baseline else ["temporal"]
        self._cached_latents: Optional[torch.Tensor] = None

    # -- training ---------------------------------------------------------------------------------
    def train(self, mode: bool = True):
        super().train(mode)
        self.components.eval()  # frozen base: no dropout noise; LoRA has none
        return self

    def trainable_parameters(self, adapter_name: Optional[str] = None) -> list[torch.nn.Parameter]:
        names = [adapter_name] if adapter_name else self.adapter_names
        return [p for name in names for p in lora_parameters(self.components.unet, name)]

    def reference_latents(self, video_BCFHW: torch.Tensor) -> torch.Tensor:
        if self.hparams.cache_latents and self._cached_latents is not None:
            return self._cached_latents
        latents = self.components.encode_video(video_BCFHW)
        if self.hparams.cache_latents:
            self._cached_latents = latents
        return latents

    def training_losses(self, batch: dict) -> tuple[list[PathLoss], torch.Tensor]:
        """The recipe's losses for one batch and the timesteps drawn (no backward here)."""
        latents = self.reference_latents(batch["video"])
        text = self.components.encode_prompts(list(batch["prompt"])).to(latents.dtype)
        timesteps = self.window.sample(latents.shape[0], latents.device)
        noise = torch.randn_like(latents)
        noisy = self.components.scheduler.add_noise(latents, noise, timesteps)
        target = diffusion_target(self.components.scheduler, latents, noise, timesteps)
        if self.hparams.lora_preset != "motion_director":
            prediction = self.components.predict(noisy, timesteps, text)
            loss = F.mse_loss(prediction.float(), target.float())
            return [PathLoss("loss", loss, self.trainable_parameters())], timesteps
        return self._motion_director_losses(noisy, target, timesteps, text), timesteps

    def _motion_director_losses(self, noisy: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor,
                                text: torch.Tensor) -> list[PathLoss]:
        losses = []
        num_frames = noisy.shape[2]
        if torch.rand(()).item() >= self.hparams.spatial_path_skip_probability:
            frame = int(torch.randint(num_frames, ()).item())
            with lora_enabled(self.components.unet, False, "temporal"):
                prediction = self.components.predict(noisy[:, :, frame:frame + 1], timesteps, text)
            loss = F.mse_loss(prediction.float(), target[:, :, frame:frame + 1].float())
            losses.append(PathLoss("loss_spatial", loss, self.trainable_parameters("spatial")))
        prediction = self.components.predict(noisy, timesteps, text)
        anchor = int(torch.randint(num_frames, ()).item())
        loss = F.mse_loss(prediction.float(), target.float())
        loss = loss + self.hparams.debias_loss_weight * appearance_debiased_mse(prediction, target, anchor)
        losses.append(PathLoss("loss_temporal", loss, self.trainable_parameters("temporal")))
        return losses

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        losses, timesteps = self.training_losses(batch)
        for path in losses:
            self.manual_backward(path.loss, inputs=path.parameters)
        if self.hparams.max_grad_norm is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.max_grad_norm, gradient_clip_algorithm="norm")
        learning_rate = optimizer.param_groups[0]["lr"]  # the rate this step uses
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        total = sum(path.loss.detach() for path in losses)
        self.log("train/loss", total, prog_bar=True)
        for path in losses:
            if path.name != "loss":
                self.log(f"train/{path.name}", path.loss.detach())
        self.log("train/lr", learning_rate)
        self.log("train/timestep", timesteps.float().mean())
        return total

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.trainable_parameters(), lr=self.hparams.learning_rate,
                                      weight_decay=self.hparams.weight_decay)
        warmup = max(0, self.hparams.warmup_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    # -- checkpoints ------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keeps only LoRA weights: the frozen base is rebuilt from its folder or seed on resume."""
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items()
                                    if ".lora_A." in k or ".lora_B." in k}

    def recipe_metadata(self) -> dict:
        """What a sampler needs to apply the LoRA as trained: t*, the window rule, the recipe."""
        return {"motion_boundary": self.window.motion_boundary, "lora_in_motion_window_only": self.lora_in_window_only,
                "lora_preset": self.hparams.lora_preset, "num_train_timesteps": self.components.num_train_timesteps}

    def save_lora(self, path: str | Path) -> Path:
        """Writes the adapters as diffusers-loadable safetensors (recipe metadata included)."""
        return save_lora_safetensors(self.components.unet, self.adapter_names, path,
                                     extra_metadata=self.recipe_metadata())

    # -- sampling ---------------------------------------------------------------------------------
    def lora_active_at(self, timestep: int) -> bool:
        """Whether sampling applies the LoRA at this timestep (t ≥ t*, or always for the baseline)."""
        return self.window.in_motion_window(timestep) if self.lora_in_window_only else True

    @torch.no_grad()
    def sample(self, prompts: list[str], num_frames: int, height: int, width: int, num_inference_steps: int = 30,
               guidance_scale: float = 12.0, negative_prompt: str = "", seed: int = 0,
               lora_mode: Optional[LoraMode] = None) -> torch.Tensor:
        """Videos (B, 3, F, H, W) in [-1, 1] for ``prompts``; ``lora_mode`` ``None`` applies the LoRA
        as the recipe says (windowed for the temporal presets, every step for the baseline)."""
        if lora_mode is None:
            lora_mode = "windowed" if self.lora_in_window_only else "all"
        return generate_video(
            self.components, prompts, num_frames, height, width, num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale, negative_prompt=negative_prompt,
            lora_active=lora_schedule(lora_mode, self.window.motion_boundary), seed=seed)

    def on_fit_start(self) -> None:
        self._cached_latents = None
