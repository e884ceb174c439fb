"""Sampling a trained LoRA (``cli.py predict``): prompts × seeds, base vs LoRA, a comparison grid.

``LoRASampler`` loads the adapters from a run folder or a safetensors file into the frozen base
model and, for every prompt and seed, samples from the same initial noise

- the base model (LoRA off),
- the LoRA on every step,
- the LoRA windowed: on only for steps with t ≥ t* (the recipe; t* from the file's metadata
  unless ``motion_boundary`` is given),

writes each as mp4 and GIF, and one comparison grid per prompt — reference | base | LoRA all
steps | LoRA windowed, one row per seed — as GIF and mp4 and as a TensorBoard image
(``predict/<prompt>/grid``). The motion fidelity of each sample to the reference clip (and the
CLIP text–frame score when a CLIP folder is given) goes to ``predict.json`` and TensorBoard
(``predict/<prompt>/<variant>/<metric>``, mean over seeds).

    python cli.py predict --config configs/video/sample_tiny.yaml
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Optional

import lightning.pytorch as pl
import numpy as np
import torch
from PIL import Image, ImageDraw

from lit_video.callbacks import frames_01, run_dir
from lit_video.components import ComponentsSpec, build_components
from lit_video.dashboards import add_gif, slug, tensorboard_writer
from lit_video.errors import VideoInputError
from lit_video.lora import load_lora_safetensors
from lit_video.metrics.clip_score import CLIPVideoScorer
from lit_video.metrics.motion_fidelity import Matching, MotionFidelity
from lit_video.sampling import generate_video, lora_schedule
from lit_video.tracking import LucasKanadeTracker, PointTracker
from lit_video.video_io import to_uint8_frames, write_video

VARIANTS = ("base", "lora_all", "lora_windowed")
COLUMN_TITLES = ("reference", "base", "LoRA all", "LoRA t>=t*")  # ≤ 10 characters: fit 64 px columns
LORA_FILE = "pytorch_lora_weights.safetensors"


def resolve_lora_file(path: str) -> Path:
    """A safetensors file, or the LoRA inside a run folder (``lora/``, or the newest ``version_*``)."""
    given = Path(path).expanduser()
    if given.is_file():
        return given
    if given.is_dir():
        for candidate in (given / LORA_FILE, given / "lora" / LORA_FILE):
            if candidate.is_file():
                return candidate
        versions = sorted(given.glob(f"version_*/lora/{LORA_FILE}"), key=lambda p: int(p.parts[-3].split("_")[1]))
        if versions:
            return versions[-1]
    raise VideoInputError(f"no LoRA at {given}: give model.init_args.lora_path a {LORA_FILE} file or a run folder "
                          f"containing lora/{LORA_FILE} (train one first, e.g. `cli.py fit --config "
                          "configs/video/tiny.yaml`)")


def label_strip(titles: tuple[str, ...], width: int, height: int = 12) -> np.ndarray:
    """A (height, len(titles)·width, 3) white strip with each column's title."""

    strip = Image.new("RGB", (width * len(titles), height), "white")
    draw = ImageDraw.Draw(strip)
    for index, title in enumerate(titles):
        draw.text((index * width + 2, 0), title[: max(1, width // 6)], fill="black")
    return np.asarray(strip)


def comparison_grid(rows: list[list[np.ndarray]], titles: tuple[str, ...] = COLUMN_TITLES) -> np.ndarray:
    """uint8 clips (F, H, W, 3) laid out as rows × columns under a title strip: (F, 12 + rows·H, cols·W, 3)."""
    num_frames, height, width, _ = rows[0][0].shape
    body = np.concatenate([np.concatenate(row, axis=2) for row in rows], axis=1)
    header = np.broadcast_to(label_strip(titles, width), (num_frames, 12, width * len(titles), 3))
    return np.ascontiguousarray(np.concatenate([header, body], axis=1))


class LoRASampler(pl.LightningModule):
    """Samples a trained motion LoRA against the base model; ``predict`` on a reference datamodule.

    Args:
        lora_path: A ``pytorch_lora_weights.safetensors`` file, or a run folder holding
            ``lora/pytorch_lora_weights.safetensors`` (or ``version_*/lora/...``: the newest).
        prompts: New prompts to sample (the motion of the reference, new appearance).
        components: The base model the LoRA was trained on (a local diffusers folder or tiny).
        seeds: Seeds of the initial noise; every variant of one seed starts from the same noise.
        negative_prompt: Unconditional prompt of classifier-free guidance.
        num_inference_steps: DDIM steps.
        guidance_scale: Classifier-free guidance scale.
        motion_boundary: t* for the windowed variant; ``None``: the value stored with the LoRA.
        fps: Frame rate of the written clips; ``None``: the reference clip's fps ÷ frame stride.
        motion_fidelity: Score each sample's motion against the reference clip.
        tracker: Point tracker of the motion fidelity score.
        track_grid_size: Points per side of the tracked grid.
        motion_match: How tracks are paired with the reference's: ``correlation`` (best-correlated
            track within a tenth of the frame diagonal: the new subject need not be where the
            reference's was) or ``trajectory`` (nearest path: samples of the same scene).
        clip_model_path: Local CLIP folder for the text–frame score (``None``: not computed).
        output_dir: Where to write clips and grids (default: ``<log dir>/predict``).
    """

    def __init__(self, lora_path: str, prompts: list[str],
                 components: ComponentsSpec = ComponentsSpec(),  # noqa: B008 (CLI schema default)
                 seeds: Optional[list[int]] = None, negative_prompt: str = "", num_inference_steps: int = 30,
                 guidance_scale: float = 12.0, motion_boundary: Optional[float] = None, fps: Optional[float] = None,
                 motion_fidelity: bool = True,
                 tracker: PointTracker = LucasKanadeTracker(),  # noqa: B008
                 track_grid_size: int = 10, motion_match: Matching = "correlation",
                 clip_model_path: Optional[str] = None,
                 output_dir: Optional[str] = None) -> None:
        super().__init__()
        if not prompts or not all(p.strip() for p in prompts):
            raise VideoInputError("model.init_args.prompts is empty or has an empty prompt: list the new prompts")
        self.save_hyperparameters(ignore=["tracker"])
        self.lora_file = resolve_lora_file(lora_path)
        self.components = build_components(components)
        self.components.eval()
        recipe = load_lora_safetensors(self.components.unet, self.lora_file)
        boundary = motion_boundary if motion_boundary is not None else recipe.get("motion_boundary")
        if boundary is None:
            raise VideoInputError(f"{self.lora_file} carries no t* (motion_boundary): set "
                                  "model.init_args.motion_boundary, e.g. 600 for ZeroScope")
        T = self.components.num_train_timesteps
        if not 0 <= float(boundary) < T:
            raise VideoInputError(f"motion_boundary must lie in [0, {T - 1}], got {boundary}")
        # DDPM-type models use integer timesteps; flow models pass sigma * 1000, which need not be one
        self.motion_boundary = int(boundary) if float(boundary).is_integer() else float(boundary)
        self.seeds = list(seeds) if seeds else [0]
        self.tracker = tracker
        self._clip = None
        if clip_model_path is not None:

            self._clip = CLIPVideoScorer(clip_model_path)

    def sample_variant(self, prompt: str, variant: str, num_frames: int, height: int, width: int,
                       seed: int) -> torch.Tensor:
        """One video (3, F, H, W) in [-1, 1]: ``base``, ``lora_all`` or ``lora_windowed``."""
        mode = {"base": "off", "lora_all": "all", "lora_windowed": "windowed"}[variant]
        hp = self.hparams
        return generate_video(self.components, [prompt], num_frames, height, width, hp.num_inference_steps,
                              hp.guidance_scale, hp.negative_prompt, lora_schedule(mode, self.motion_boundary),
                              seed)[0]

    def _output_dir(self) -> Path:
        return Path(self.hparams.output_dir) if self.hparams.output_dir else run_dir(self.trainer) / "predict"

    def _fps(self) -> float:
        if self.hparams.fps is not None:
            return self.hparams.fps
        datamodule = getattr(self.trainer, "datamodule", None)
        return float(getattr(datamodule, "clip_fps", 8.0) or 8.0)

    @torch.no_grad()
    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        reference_CFHW = batch["video"][0]
        _, num_frames, height, width = reference_CFHW.shape
        reference = to_uint8_frames(reference_CFHW)
        folder, fps = self._output_dir(), self._fps()
        writer = tensorboard_writer(self.trainer)
        summary = {"lora_file": str(self.lora_file), "motion_boundary": self.motion_boundary, "seeds": self.seeds,
                   "negative_prompt": self.hparams.negative_prompt, "prompts": {}}
        motion_to_reference = (MotionFidelity(frames_01(reference_CFHW), self.tracker, self.hparams.track_grid_size,
                                              match=self.hparams.motion_match)
                               if self.hparams.motion_fidelity else None)
        for prompt in self.hparams.prompts:
            name, rows, scores = slug(prompt), [], {v: {} for v in VARIANTS}
            for seed in self.seeds:
                row = [reference]
                for variant in VARIANTS:
                    video = self.sample_variant(prompt, variant, num_frames, height, width, seed)
                    frames = to_uint8_frames(video)
                    row.append(frames)
                    for suffix in (".mp4", ".gif"):
                        write_video(folder / name / f"seed{seed}_{variant}{suffix}", frames, fps)
                    if motion_to_reference is not None:
                        scores[variant].setdefault("motion_fidelity", []).append(motion_to_reference(frames_01(video)))
                    if self._clip is not None:
                        scores[variant].setdefault("clip_score", []).append(self._clip.text_frame_score(frames, prompt))
                rows.append(row)
            grid = comparison_grid(rows)
            for suffix in (".gif", ".mp4"):
                write_video(folder / name / f"grid{suffix}", grid, fps)
            summary["prompts"][prompt] = {v: {m: {"mean": statistics.fmean(x), "std": statistics.pstdev(x), "values": x}
                                              for m, x in scores[v].items()} for v in VARIANTS}
            if writer is not None:
                add_gif(writer, f"predict/{name}/grid", grid, 0, fps)
                for variant in VARIANTS:
                    for metric, values in scores[variant].items():
                        writer.add_scalar(f"predict/{name}/{variant}/{metric}", statistics.fmean(values), 0)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "predict.json").write_text(json.dumps(summary, indent=2))
        if writer is not None:
            writer.flush()
        return summary
