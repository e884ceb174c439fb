"""The motion recipe on DiT video models, with the timestep window in the model's own noise units.

``DiTMotionCustomizationModule`` is ``MotionCustomizationModule`` (same training step, losses,
optimizer, checkpoints, callbacks) with

- DiT LoRA presets (``self_attn``: full 3-D self-attention q/k/v/out; ``self_attn_qk``; Latte's
  ``latte_temporal``) and the MotionDirector baseline adapted (``motion_director``: spatial adapter on
  cross-attention + feed-forward trained on one frame, temporal adapter on self-attention);
- the boundary given as a ``timestep``, a ``sigma`` or a ``modelscope_timestep`` (equal SNR, see
  ``lit_video.dit.boundary``): flow models (Wan) draw σ ≥ σ* from the scheduler's shifted
  distribution, DDPM/DDIM models (CogVideoX) t ≥ t*; sampling applies the LoRA on steps with t ≥ t*
  (t = σ·T for flow models);
- LoRA files under diffusers' ``transformer.`` prefix (``WanPipeline.load_lora_weights`` reads them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from lit_video.components import ComponentsSpec
from lit_video.dit.boundary import BoundaryUnits, boundary_sigma, ddpm_boundary_timestep
from lit_video.dit.config import TinyDiTConfig
from lit_video.dit.flow import FlowWindowSampler
from lit_video.errors import VideoInputError
from lit_video.lora import save_lora_safetensors
from lit_video.module import MotionCustomizationModule
from lit_video.timesteps import MotionWindowSampler

DiTRecipe = Literal["self_attn", "self_attn_qk", "latte_temporal", "motion_director"]


def window_sampler(components, motion_boundary: float, units: BoundaryUnits, restrict_to_window: bool):
    """The family's training-timestep sampler: σ ≥ σ* (flow) or t ≥ t* (DDPM/DDIM)."""
    T = components.num_train_timesteps
    if getattr(components, "is_flow", False):
        sigma = boundary_sigma(motion_boundary, units, T)
        expert = getattr(components, "expert_boundary", None)
        if expert is not None and restrict_to_window and sigma * T < expert:
            raise VideoInputError(
                f"Wan 2.2: the LoRA trains the high-noise expert, which runs only for t ≥ boundary_ratio·T = "
                f"{expert:g}; the motion boundary σ* = {sigma:.3f} (t = {sigma * T:g}) reaches below it: set "
                f"model.motion_boundary ≥ {expert / T:g} (sigma units)")
        return FlowWindowSampler(T, components.scheduler.shift, sigma, restrict_to_window)
    t_star = ddpm_boundary_timestep(motion_boundary, units, components.scheduler.alphas_cumprod)
    return MotionWindowSampler(T, t_star, restrict_to_window)


class DiTMotionCustomizationModule(MotionCustomizationModule):
    """One-shot motion LoRA on a DiT (Wan 2.x, CogVideoX, Latte).

    Args:
        components: Base model: a local diffusers folder (``transformer/`` …) or tiny random components
            (``family`` + ``tiny_dit``).
        lora_preset: ``self_attn`` (default: attn1 q/k/v/out of every block), ``self_attn_qk``,
            ``latte_temporal`` (Latte's temporal blocks) or ``motion_director`` (the adapted baseline).
        lora_rank: LoRA rank r.
        lora_alpha: LoRA alpha (scale alpha / r); ``None`` uses r.
        motion_boundary: The motion regime's lowest noise level, in ``motion_boundary_units``.
        motion_boundary_units: ``sigma`` (flow σ ∈ [0, 1]; default), ``timestep`` (the model's own axis:
            t = σ·1000 for Wan, integer t for CogVideoX) or ``modelscope_timestep`` (a ModelScope t* at
            equal SNR: 600 ↔ σ ≈ 0.70).
        train_in_motion_window: Draw training noise levels only inside the window; ``None``: True for
            the LoRA presets, False for ``motion_director``.
        lora_in_motion_window_only: Sampling applies the LoRA only on steps with t ≥ t*; ``None``: as above.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warmup steps.
        max_grad_norm: Global gradient-norm clip; ``None`` disables it.
        cache_latents: Encode the reference video once.
        debias_loss_weight: ``motion_director``: weight of the appearance-debiased loss.
        spatial_path_skip_probability: ``motion_director``: fraction of steps without the spatial path.
        gradient_checkpointing: Recompute transformer activations in backward.
    """

    def __init__(
        self,
        components: ComponentsSpec = ComponentsSpec(family="wan", tiny_dit=TinyDiTConfig()),  # noqa: B008
        lora_preset: DiTRecipe = "self_attn",
        lora_rank: int = 32,
        lora_alpha: Optional[float] = None,
        motion_boundary: float = 0.7,
        motion_boundary_units: BoundaryUnits = "sigma",
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
        if components.family == "unet" and not components.pretrained_path:
            raise VideoInputError("DiTMotionCustomizationModule needs a DiT: set model.components.family to wan, "
                                  "cogvideox or latte, or pretrained_path to a folder with transformer/ "
                                  "(UNets train with lit_video.MotionCustomizationModule)")
        super().__init__(components=components, lora_preset=lora_preset, lora_rank=lora_rank, lora_alpha=lora_alpha,
                         motion_boundary=0, train_in_motion_window=train_in_motion_window,
                         lora_in_motion_window_only=lora_in_motion_window_only, learning_rate=learning_rate,
                         weight_decay=weight_decay, warmup_steps=warmup_steps, max_grad_norm=max_grad_norm,
                         cache_latents=cache_latents, debias_loss_weight=debias_loss_weight,
                         spatial_path_skip_probability=spatial_path_skip_probability,
                         gradient_checkpointing=gradient_checkpointing)
        restrict = (lora_preset != "motion_director") if train_in_motion_window is None else train_in_motion_window
        self.window = window_sampler(self.components, motion_boundary, motion_boundary_units, restrict)

    def recipe_metadata(self) -> dict:
        """The parent's (t* in the model's timestep units) plus σ* for flow models and the family."""
        metadata = super().recipe_metadata()
        metadata["family"] = self.components.family
        metadata["motion_boundary_units"] = "timestep"
        if isinstance(self.window, FlowWindowSampler):
            metadata["motion_boundary_sigma"] = self.window.boundary_sigma
            metadata["flow_shift"] = self.window.shift
        return metadata

    def save_lora(self, path: str | Path) -> Path:
        """diffusers-loadable safetensors under the ``transformer.`` prefix (``load_lora_weights`` on the
        family's pipeline), recipe metadata included."""
        return save_lora_safetensors(self.components.unet, self.adapter_names, path,
                                     prefix=self.components.lora_prefix, extra_metadata=self.recipe_metadata())
