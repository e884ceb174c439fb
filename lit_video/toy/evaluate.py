"""The method's two claims measured on the shipped toy model (used by the tests, the benchmark and
docs/video.md): the probe's t* and the windowed recipe's motion transfer.

Shape legend: F frames, H/W height/width.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import lightning.pytorch as pl
import numpy as np
import torch

from lit_video.components import ComponentsSpec
from lit_video.metrics.motion_fidelity import MotionFidelity
from lit_video.sampling import generate_video
from lit_video.toy.colour import colour_agreement, dominant_colour
from lit_video.toy.data import ToyReferenceDataModule
from lit_video.toy.module import ToyMotionCustomizationModule
from lit_video.toy.probe import ToyProbe
from lit_video.toy.world import COLOURS, DIRECTIONS, SHAPES
from lit_video.tracking import LucasKanadeTracker

TOY_MODEL_PATH = Path(__file__).resolve().parent.parent / "assets" / "toy_t2v"


def toy_tracker() -> LucasKanadeTracker:
    """Lucas–Kanade sized for 32×32 toy frames (3-pixel windows, 2 levels)."""
    return LucasKanadeTracker(window_radius=3, pyramid_levels=2)


def frames_F3HW(video_CFHW: torch.Tensor) -> torch.Tensor:  # noqa: N802 (shape suffix)
    """Pixels in [-1, 1] (3, F, H, W) → [0, 1] (F, 3, H, W), the trackers' layout."""
    return (video_CFHW.permute(1, 0, 2, 3).float().cpu() + 1) / 2


def uint8_FHW3(video_CFHW: torch.Tensor) -> np.ndarray:  # noqa: N802 (shape suffix)
    """Pixels in [-1, 1] (3, F, H, W) → uint8 (F, H, W, 3)."""
    return ((video_CFHW.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()


def motion_to_reference(reference_CFHW: torch.Tensor, grid_size: int = 8) -> Callable[[torch.Tensor], float]:
    """Motion fidelity of samples (3, F, H, W) in [-1, 1] to the reference, best matches searched anywhere
    in the frame (the claim is the motion, not the position the shape takes)."""
    score = MotionFidelity(frames_F3HW(reference_CFHW), toy_tracker(), grid_size, match="correlation",
                           match_radius_fraction=None)
    return lambda candidate_CFHW: score(frames_F3HW(candidate_CFHW))


def run_probe(model_path: str | Path = TOY_MODEL_PATH, colour: str = "red", shape: str = "square",
              direction: str = "right", edit_prompt: str = "a blue circle moving",
              boundaries: Optional[list[int]] = None, num_inference_steps: int = 10, seeds: Optional[list[int]] = None,
              noise_prior: float = 0.95, guidance_scale: float = 1.0) -> tuple[list, dict]:
    """The toy probe on the centred reference clip; returns (per-window results, summary)."""

    data = ToyReferenceDataModule(colour, shape, direction)
    probe = ToyProbe(edit_prompt, ComponentsSpec(pretrained_path=str(model_path)),
                     num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                     boundaries=boundaries if boundaries is not None else [0, 200, 400, 600, 800, 1000],
                     tracker=toy_tracker(), track_grid_size=8, seeds=seeds or [0, 1], noise_prior=noise_prior,
                     save_videos=False)
    results, summary = probe.run(data.video_CFHW[None], data.prompt)
    summary.pop("videos")
    return results, summary


def train_recipe(model_path: str | Path = TOY_MODEL_PATH, colour: str = "red", shape: str = "square",
                 direction: str = "right", prompt: Optional[str] = None, motion_boundary: int = 600,
                 max_steps: int = 300, lora_rank: int = 8, learning_rate: float = 3e-3, seed: int = 0,
                 lora_preset: str = "temporal_layers"):
    """Trains the windowed LoRA on the temporal layers (``configs/video/toy.yaml``'s recipe) on one toy
    clip (CPU, no logger); returns (module, clip)."""

    pl.seed_everything(seed, verbose=False)
    data = ToyReferenceDataModule(colour, shape, direction, prompt=prompt or f"a {colour} {shape} moving",
                                  steps_per_epoch=max_steps)
    module = ToyMotionCustomizationModule(ComponentsSpec(pretrained_path=str(model_path)), lora_preset=lora_preset,
                                       lora_rank=lora_rank, motion_boundary=motion_boundary,
                                       learning_rate=learning_rate)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=data)
    return module, data.video_CFHW


def compare_transfer(module, reference_CFHW: torch.Tensor, prompt: str = "a blue circle moving",
                     seeds: tuple[int, ...] = (0, 1, 2, 3), num_inference_steps: int = 10,
                     guidance_scale: float = 3.0) -> dict[str, dict[str, float]]:
    """Base model vs LoRA windowed vs LoRA on all steps for ``prompt``: mean motion fidelity to the
    reference and mean colour agreement with ``prompt`` over ``seeds``."""
    _, F, H, W = reference_CFHW.shape
    score_motion = motion_to_reference(reference_CFHW)
    table = {}
    for mode in ("off", "windowed", "all"):
        motion, colour = [], []
        for seed in seeds:
            video_CFHW = module.sample([prompt], F, H, W, num_inference_steps=num_inference_steps,
                                       guidance_scale=guidance_scale, seed=seed, lora_mode=mode)[0]
            motion.append(score_motion(video_CFHW))
            colour.append(colour_agreement(uint8_FHW3(video_CFHW), prompt))
        table[mode] = {"motion": float(np.mean(motion)), "motion_std": float(np.std(motion)),
                       "colour": float(np.mean(colour)), "colour_std": float(np.std(colour))}
    return table


def shape_direction(frames_FHW3: np.ndarray, saturation_threshold: float = 60.0) -> Optional[str]:
    """right/left/down/up from the path of the saturated pixels' centroid; ``None`` if no shape or no motion."""
    pixels = frames_FHW3.astype(np.float32)
    mask_FHW = pixels.max(-1) - pixels.min(-1) > saturation_threshold
    if (mask_FHW.sum((1, 2)) == 0).any():
        return None
    ys, xs = np.mgrid[:mask_FHW.shape[1], :mask_FHW.shape[2]]
    area_F = mask_FHW.sum((1, 2))
    path_F2 = np.stack([(mask_FHW * xs).sum((1, 2)) / area_F, (mask_FHW * ys).sum((1, 2)) / area_F], 1)
    step = path_F2[-1] - path_F2[0]
    if np.abs(step).max() < 2.0:
        return None
    return max(DIRECTIONS, key=lambda name: float(np.dot(DIRECTIONS[name], step)))


@torch.no_grad()
def text_following(components, seeds: tuple[int, ...] = (0, 1), num_inference_steps: int = 10,
                   guidance_scale: float = 3.0, num_frames: int = 8, size: int = 32) -> dict[str, float]:
    """How often samples of the base model show the prompted colour (dominant) and direction, over every
    colour × shape × direction prompt and ``seeds``."""
    colour_hits, direction_hits, total = 0, 0, 0
    for colour in COLOURS:
        for shape in SHAPES:
            for direction in DIRECTIONS:
                prompt = f"a {colour} {shape} moving {direction}"
                for seed in seeds:
                    video = generate_video(components, [prompt], num_frames, size, size, num_inference_steps,
                                           guidance_scale, seed=seed)[0]
                    frames = uint8_FHW3(video)
                    colour_hits += dominant_colour(frames) == colour
                    direction_hits += shape_direction(frames) == direction
                    total += 1
    return {"colour": colour_hits / total, "direction": direction_hits / total, "samples": total}
