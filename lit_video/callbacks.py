"""Callbacks of the video fine-tuner: samples and metrics during fit, and the LoRA export at the end.

- ``VideoSamples``: every ``every_n_steps`` optimizer steps and at the end of fit, samples the
  prompts × seeds with the module's recipe (LoRA windowed to t ≥ t* for the temporal presets),
  writes ``<log dir>/samples/step_NNNNNN/<prompt>[_seed<s>].{mp4,gif}``, logs each as an animated
  GIF (``samples/<prompt>``), the reference clip once (``samples/reference``, at the clip's fps ÷
  frame stride), and the metrics as scalars at that step: ``val/motion_fidelity`` (motion of the
  sample against the reference clip) and, when a CLIP folder is given, ``val/clip_score`` (CLIP
  text–frame score with the prompt), each also per prompt (``val/<metric>/<prompt>``, mean over
  seeds) and as the spread over prompts and seeds (``val/<metric>_std``).
- ``ExportLoRA``: writes the adapters as diffusers-loadable safetensors when fit ends (with t* and
  the window rule in the metadata, which ``lit_video.predict.LoRASampler`` reads).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Optional

import lightning.pytorch as pl
import torch

from lit_video.dashboards import add_gif, slug, tensorboard_writer
from lit_video.errors import VideoInputError
from lit_video.metrics.clip_score import CLIPVideoScorer
from lit_video.metrics.motion_fidelity import Matching, MotionFidelity
from lit_video.tracking import LucasKanadeTracker, PointTracker
from lit_video.video_io import to_uint8_frames, write_video


def run_dir(trainer: pl.Trainer) -> Path:
    """The run's log dir (the logger's, else the trainer's root dir)."""
    logger = trainer.logger
    return Path(logger.log_dir if logger is not None and logger.log_dir else trainer.default_root_dir)


def frames_01(video_CFHW: torch.Tensor) -> torch.Tensor:
    """Pixels in [-1, 1] (3, F, H, W) → (F, 3, H, W) in [0, 1] (the trackers' input)."""
    return (video_CFHW.detach().float().cpu().permute(1, 0, 2, 3).clamp(-1, 1) + 1) / 2


class VideoSamples(pl.Callback):
    """Samples prompts × seeds during fit; logs GIFs and ``val/*`` metrics at the step they were made.

    Args:
        prompts: Prompts to sample (empty: the training prompt).
        every_n_steps: Sample every N optimizer steps (0: only at the end of fit).
        seeds: Seeds of the initial noise (fixed, so samples are comparable across steps).
        num_inference_steps: DDIM steps.
        guidance_scale: Classifier-free guidance scale.
        negative_prompt: Unconditional prompt of classifier-free guidance.
        fps: Frame rate of written videos and GIFs; ``None``: the reference clip's fps ÷ frame stride.
        motion_fidelity: Log ``val/motion_fidelity`` of each sample against the reference clip.
        tracker: Point tracker of the motion fidelity score.
        track_grid_size: Points per side of the tracked grid.
        motion_match: How tracks are paired with the reference's: ``correlation`` (best-correlated
            track within a tenth of the frame diagonal: the new subject need not be where the
            reference's was) or ``trajectory`` (nearest path: samples of the same scene).
        clip_model_path: Local CLIP folder; when set, log ``val/clip_score`` (text–frame score).
        save_files: Also write mp4 and GIF files under ``<log dir>/samples/``.
    """

    def __init__(self, prompts: Optional[list[str]] = None, every_n_steps: int = 0, seeds: Optional[list[int]] = None,
                 num_inference_steps: int = 30, guidance_scale: float = 12.0, negative_prompt: str = "",
                 fps: Optional[float] = None, motion_fidelity: bool = True,
                 tracker: PointTracker = LucasKanadeTracker(),  # noqa: B008 (CLI schema default)
                 track_grid_size: int = 10, motion_match: Matching = "correlation",
                 clip_model_path: Optional[str] = None, save_files: bool = True) -> None:

        if every_n_steps < 0 or num_inference_steps < 1:
            raise VideoInputError(f"VideoSamples needs every_n_steps ≥ 0 and num_inference_steps ≥ 1, got "
                                  f"{every_n_steps}, {num_inference_steps}")
        self.prompts = list(prompts or [])
        self.every_n_steps = every_n_steps
        self.seeds = list(seeds) if seeds else [0]
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.negative_prompt = negative_prompt
        self.fps = fps
        self.motion_fidelity = motion_fidelity
        self.tracker = tracker
        self.track_grid_size = track_grid_size
        self.motion_match = motion_match
        self.clip_model_path = clip_model_path
        self.save_files = save_files
        self._clip = None
        if clip_model_path is not None:

            self._clip = CLIPVideoScorer(clip_model_path)  # fails at config time on a bad folder

    @staticmethod
    def _reference(trainer: pl.Trainer) -> Optional[torch.Tensor]:
        datamodule = trainer.datamodule
        return getattr(datamodule, "video_CFHW", None) if datamodule is not None else None

    def _fps(self, trainer: pl.Trainer) -> float:
        if self.fps is not None:
            return self.fps
        return float(getattr(trainer.datamodule, "clip_fps", 8.0) or 8.0)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        reference = self._reference(trainer)
        writer = tensorboard_writer(trainer)
        if trainer.global_rank == 0 and writer is not None and reference is not None:
            add_gif(writer, "samples/reference", to_uint8_frames(reference), 0, self._fps(trainer))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        step = trainer.global_step
        last = trainer.max_steps > 0 and step >= trainer.max_steps
        if self.every_n_steps > 0 and step % self.every_n_steps == 0 and not last:  # the last one: on_train_end
            self.sample_and_log(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.sample_and_log(trainer, pl_module)

    @torch.no_grad()
    def sample_and_log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        """Samples, writes and logs at the current step; returns the logged metrics (rank 0)."""
        reference = self._reference(trainer)
        if trainer.global_rank != 0 or reference is None:
            return {}
        _, num_frames, height, width = reference.shape
        prompts = self.prompts or [trainer.datamodule.prompt]
        step, fps = trainer.global_step, self._fps(trainer)
        writer = tensorboard_writer(trainer)
        was_training = pl_module.training
        pl_module.eval()
        per_prompt: dict[str, dict[str, list[float]]] = {}
        motion_to_reference = (MotionFidelity(frames_01(reference), self.tracker, self.track_grid_size,
                                              match=self.motion_match) if self.motion_fidelity else None)
        for seed in self.seeds:
            videos = pl_module.sample(prompts, num_frames, height, width, self.num_inference_steps,
                                      self.guidance_scale, self.negative_prompt, seed)
            for prompt, video in zip(prompts, videos):
                frames = to_uint8_frames(video)
                name = slug(prompt) if len(self.seeds) == 1 else f"{slug(prompt)}_seed{seed}"
                if self.save_files:
                    stem = run_dir(trainer) / "samples" / f"step_{step:06d}" / name
                    write_video(stem.with_suffix(".mp4"), frames, fps)
                    write_video(stem.with_suffix(".gif"), frames, fps)
                if writer is not None:
                    tag = f"samples/{slug(prompt)}" + ("" if len(self.seeds) == 1 else f"/seed_{seed}")
                    add_gif(writer, tag, frames, step, fps)
                scores = per_prompt.setdefault(slug(prompt), {})
                if motion_to_reference is not None:
                    scores.setdefault("motion_fidelity", []).append(motion_to_reference(frames_01(video)))
                if self._clip is not None:
                    scores.setdefault("clip_score", []).append(self._clip.text_frame_score(frames, prompt))
        pl_module.train(was_training)
        metrics = summarise(per_prompt)
        if metrics:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
        return metrics


def summarise(per_prompt: dict[str, dict[str, list[float]]]) -> dict[str, float]:
    """``val/<metric>`` (mean over prompts × seeds), ``val/<metric>_std`` and ``val/<metric>/<prompt>``."""
    metrics: dict[str, float] = {}
    names = sorted({name for scores in per_prompt.values() for name in scores})
    for name in names:
        values = [v for scores in per_prompt.values() for v in scores.get(name, [])]
        metrics[f"val/{name}"] = statistics.fmean(values)
        metrics[f"val/{name}_std"] = statistics.pstdev(values)
        for prompt, scores in per_prompt.items():
            if scores.get(name):
                metrics[f"val/{name}/{prompt}"] = statistics.fmean(scores[name])
    return metrics


class ExportLoRA(pl.Callback):
    """Writes the trained adapters as diffusers-loadable safetensors when fit ends (rank 0).

    Args:
        output_path: The file to write (default: ``<log dir>/lora/pytorch_lora_weights.safetensors``).
    """

    def __init__(self, output_path: Optional[str] = None) -> None:
        self.output_path = output_path
        self.written: Optional[Path] = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        file_name = "pytorch_lora_weights.safetensors"
        path = Path(self.output_path) if self.output_path else run_dir(trainer) / "lora" / file_name
        self.written = pl_module.save_lora(path)
