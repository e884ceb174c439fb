"""The motion-encoding probe (spec §1): where on the timestep axis does a model encode motion?

1. Encode the reference video and DDIM-invert it to z_T with the source (or empty) prompt.
2. For each window of training-axis timesteps, re-sample from z_T (DDIM, eta = 0) using the NEW
   prompt on steps whose t lies in the window and the source prompt elsewhere.
3. Score each result: appearance A = CLIP text–frame score with the new prompt; motion M = motion
   fidelity of point tracks against the reference video.
4. Sweep "late" windows [0, b) and "early" windows [b, T−1] over boundaries b. The boundary t*
   is where motion falls off as the late window grows: the first crossing of the normalised motion
   m(b) = (M(b) − M_full) / (M_source − M_full) below 1 − ``boundary_drop_fraction``, linearly
   interpolated between grid points.

Run with ``cli.py predict --config configs/video/probe_tiny.yaml``; writes ``probe.csv``,
``probe.json`` and ``probe.png`` and logs scalars, the plot, the table and sample GIFs to
TensorBoard under ``probe/``.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal, Optional

import lightning.pytorch as pl
import numpy as np
import torch

from lit_video.components import ComponentsSpec, VideoDiffusionComponents, build_components
from lit_video.dashboards import add_gif, add_png, tensorboard_writer
from lit_video.errors import VideoInputError
from lit_video.metrics.clip_score import CLIPVideoScorer, build_tiny_clip
from lit_video.metrics.motion_fidelity import MotionFidelity
from lit_video.sampling import guided_denoiser, inference_schedule, invert_latents, sample_latents
from lit_video.tracking import LucasKanadeTracker, PointTracker
from lit_video.video_io import to_uint8_frames, write_video


@dataclass
class WindowResult:
    kind: str  # "late": new prompt on t < boundary; "early": new prompt on t ≥ boundary
    boundary: int
    window_start: int  # inclusive, training-axis timesteps
    window_end: int  # inclusive
    edited_steps: int  # inference steps that used the new prompt
    appearance: float  # mean over seeds
    motion: float  # mean over seeds
    appearance_std: float = 0.0  # spread (population standard deviation) over seeds
    motion_std: float = 0.0
    num_seeds: int = 1


def in_window(t: float, start: float, end: float, num_train_timesteps: Optional[int] = None) -> bool:
    """Whether timestep t lies in the window [start, end] of the integer training axis. Flow models' steps
    t = σ·T are not integers and reach T: a late window [0, b−1] holds every t < b (all of them when it
    ends at T−1), an early window [b, T−1] every t ≥ b (none when b = T), so each t belongs to exactly one
    of the two windows of a boundary."""
    t = float(t)
    T = num_train_timesteps
    if T is not None and start >= T:
        return False
    below_end = True if T is not None and end >= T - 1 else t < end + 1
    return t >= start and below_end


def window_text(source: torch.Tensor, edit: torch.Tensor, start: int, end: int,
                num_train_timesteps: Optional[int] = None) -> Callable[[int], torch.Tensor]:
    """timestep → the new prompt's embeddings inside [start, end], the source's elsewhere."""
    return lambda t: edit if in_window(t, start, end, num_train_timesteps) else source


def resample_with_window(components: VideoDiffusionComponents, inverted_latents: torch.Tensor,
                         schedule, source_text: torch.Tensor, edit_text: torch.Tensor,
                         negative_text: torch.Tensor, window: tuple[int, int], guidance_scale: float) -> torch.Tensor:
    """Re-sampling (DDIM, or the flow ODE) from z_T with the new prompt on steps whose t lies in ``window``."""
    text_for_step = window_text(source_text, edit_text, *window, components.num_train_timesteps)
    denoise = guided_denoiser(components, text_for_step, negative_text, guidance_scale)
    return sample_latents(denoise, inverted_latents, schedule)


def estimate_motion_boundary(boundaries: list[int], motion: list[float], motion_source: float, motion_full: float,
                             drop_fraction: float = 0.5) -> Optional[float]:
    """First b where the late-window motion has lost ``drop_fraction`` of the source→full-edit drop."""
    span = motion_source - motion_full
    if not span > 1e-6:  # the full edit did not lose motion (or NaN): there is no fall-off to locate
        return None
    normalised = [(m - motion_full) / span for m in motion]
    threshold = 1.0 - drop_fraction
    order = np.argsort(boundaries)
    points = [(boundaries[i], normalised[i]) for i in order]
    if points[0][1] <= threshold:
        return float(points[0][0])
    for (b0, m0), (b1, m1) in zip(points, points[1:]):
        if m1 <= threshold < m0:
            return float(b0 + (m0 - threshold) / (m0 - m1) * (b1 - b0))
    return None


class MotionEncodingProbe(pl.LightningModule):
    """Measures where motion lives on the timestep axis; ``predict`` runs it on the datamodule's clip.

    Args:
        components: Base model: a local diffusers folder or tiny random components.
        edit_prompt: The NEW prompt injected over the windows (an appearance change, e.g. a
            different subject doing the same thing).
        source_prompt: Prompt of the reference video; ``None`` uses the datamodule's prompt.
        invert_with: Condition of the DDIM inversion: the ``source`` prompt or the ``empty`` one.
        num_inference_steps: DDIM steps of inversion and re-sampling.
        guidance_scale: CFG scale of re-sampling (inversion uses none); with 1 the empty window
            reconstructs the reference exactly up to inversion error.
        boundaries: Window boundaries b on the training-timestep axis; ``None``: ``num_boundaries``
            evenly spaced values in [0, T].
        num_boundaries: Grid size when ``boundaries`` is ``None``.
        boundary_drop_fraction: t* is where the late-window motion has lost this fraction of the
            drop from the source re-sample to the full-window edit.
        clip_model_path: Local CLIP folder for the appearance score. ``None`` builds a tiny random
            CLIP (plumbing demo only: its appearance numbers mean nothing).
        tracker: Point tracker for the motion fidelity score (default: weight-free pyramidal Lucas–Kanade).
        track_grid_size: Points per side of the tracked grid.
        output_dir: Where to write the table, plot and videos (default: ``<log dir>/probe``).
        save_videos: Also write every re-sampled video as GIF and log it to TensorBoard.
        fps: Frame rate of written GIFs; ``None``: the clip's fps ÷ frame stride.
        seeds: Seeds of the noise prior; each window is re-sampled once per seed and the table and
            plot show the mean ± spread over seeds.
        noise_prior: p of the start latents √p·z_inv + √(1−p)·ε_seed (MotionDirector's noise
            prior); 1 starts from the inverted latents alone, so every seed gives the same video.
    """

    def __init__(
        self,
        edit_prompt: str,
        components: ComponentsSpec = ComponentsSpec(),  # noqa: B008 (CLI schema default)
        source_prompt: Optional[str] = None,
        invert_with: Literal["source", "empty"] = "source",
        num_inference_steps: int = 50,
        guidance_scale: float = 1.0,
        boundaries: Optional[list[int]] = None,
        num_boundaries: int = 11,
        boundary_drop_fraction: float = 0.5,
        clip_model_path: Optional[str] = None,
        tracker: PointTracker = LucasKanadeTracker(),  # noqa: B008
        track_grid_size: int = 10,
        output_dir: Optional[str] = None,
        save_videos: bool = True,
        fps: Optional[float] = None,
        seeds: Optional[list[int]] = None,
        noise_prior: float = 1.0,
    ) -> None:
        super().__init__()
        if not edit_prompt.strip():

            raise VideoInputError("model.edit_prompt is empty: give the new prompt to inject, e.g. 'a tiger walking'")
        if not 0.0 < noise_prior <= 1.0:

            raise VideoInputError(f"model.noise_prior must lie in (0, 1], got {noise_prior}")
        if seeds is not None and len(set(seeds)) > 1 and noise_prior == 1.0:

            raise VideoInputError("several seeds with noise_prior 1 give identical videos (re-sampling from the "
                                  "inverted latents is deterministic): set model.noise_prior < 1, e.g. 0.9")
        self.seeds = list(seeds) if seeds else [0]
        self.save_hyperparameters(ignore=["tracker"])
        self.components = build_components(components)
        self.components.eval()
        self.tracker = tracker
        T = self.components.num_train_timesteps
        self.boundaries = sorted(set(boundaries if boundaries is not None else
                                     np.linspace(0, T, num_boundaries).round().astype(int).tolist()))
        self._clip: Optional[CLIPVideoScorer] = None

    @property
    def clip(self) -> CLIPVideoScorer:
        if self._clip is None:
            if self.hparams.clip_model_path is None:
                warnings.warn("probe: no clip_model_path, using a tiny RANDOM CLIP; appearance scores are meaningless",
                              stacklevel=2)
            self._clip = CLIPVideoScorer(self.hparams.clip_model_path or build_tiny_clip())
        return self._clip

    def windows(self) -> list[tuple[str, int, int, int]]:
        """(kind, boundary, start, end) of every late [0, b−1] and early [b, T−1] window."""
        T = self.components.num_train_timesteps
        return ([("late", b, 0, b - 1) for b in self.boundaries] + [("early", b, b, T - 1) for b in self.boundaries])

    @torch.no_grad()
    def run(self, video_BCFHW: torch.Tensor, source_prompt: str) -> tuple[list[WindowResult], dict]:
        """The whole probe on one clip; returns the per-window results and a summary."""
        components = self.components
        schedule = inference_schedule(components, self.hparams.num_inference_steps)
        edit_prompt = self.hparams.edit_prompt
        source, edit, empty = components.encode_prompts([source_prompt, edit_prompt, ""]).split(1)
        latents = components.encode_video(video_BCFHW.to(self.device))
        inversion_text = source if self.hparams.invert_with == "source" else empty
        inverted = invert_latents(guided_denoiser(components, lambda t: inversion_text, None, 1.0), latents, schedule)
        reference = (video_BCFHW[0].permute(1, 0, 2, 3).float().cpu() + 1) / 2  # (F, 3, H, W) in [0, 1]
        motion_to_reference = MotionFidelity(reference, self.tracker, self.hparams.track_grid_size)

        starts = [self.start_latents(inverted, seed) for seed in self.seeds]
        cache: dict[tuple[int, ...], tuple[list[float], list[float], np.ndarray]] = {}
        results, videos = [], {}
        for kind, boundary, start, end in self.windows():
            edited = tuple(t for t in schedule.timesteps if in_window(t, start, end, components.num_train_timesteps))
            if edited not in cache:  # windows that cover the same inference steps give the same video
                appearance, motion, first = [], [], None
                for start_latents in starts:
                    sampled = resample_with_window(components, start_latents, schedule, source, edit, empty,
                                                   (start, end), self.hparams.guidance_scale)
                    frames = to_uint8_frames(components.decode_latents(sampled)[0])
                    candidate = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
                    appearance.append(self.clip.text_frame_score(frames, edit_prompt))
                    motion.append(motion_to_reference(candidate))
                    first = frames if first is None else first
                cache[edited] = (appearance, motion, first)
            appearance, motion, frames = cache[edited]
            results.append(WindowResult(kind, boundary, start, end, len(edited), float(np.mean(appearance)),
                                        float(np.mean(motion)), float(np.std(appearance)), float(np.std(motion)),
                                        len(self.seeds)))
            videos[f"{kind}_b{boundary:04d}"] = frames
        source_motion = float(np.mean(cache[()][1])) if () in cache else float("nan")
        full = tuple(schedule.timesteps)
        full_motion = float(np.mean(cache[full][1])) if full in cache else float("nan")
        late = [r for r in results if r.kind == "late"]
        boundary = estimate_motion_boundary([r.boundary for r in late], [r.motion for r in late], source_motion,
                                            full_motion, self.hparams.boundary_drop_fraction)
        summary = {"motion_boundary": boundary, "num_train_timesteps": components.num_train_timesteps,
                   "motion_source_resample": source_motion, "motion_full_edit": full_motion,
                   "source_prompt": source_prompt, "edit_prompt": edit_prompt, "seeds": self.seeds,
                   "noise_prior": self.hparams.noise_prior,
                   "inference_timesteps": schedule.timesteps, "videos": videos}
        return results, summary

    def start_latents(self, inverted: torch.Tensor, seed: int) -> torch.Tensor:
        """√p·z_inv + √(1−p)·ε_seed (p = ``noise_prior``); exactly z_inv for p = 1."""
        p = self.hparams.noise_prior
        if p == 1.0:
            return inverted
        generator = torch.Generator("cpu").manual_seed(seed)
        noise = torch.randn(inverted.shape, generator=generator).to(inverted.device, inverted.dtype)
        return p ** 0.5 * inverted + (1 - p) ** 0.5 * noise

    def _fps(self) -> float:
        if self.hparams.fps is not None:
            return self.hparams.fps
        return float(getattr(getattr(self.trainer, "datamodule", None), "clip_fps", 8.0) or 8.0)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        source_prompt = self.hparams.source_prompt or batch["prompt"][0]
        results, summary = self.run(batch["video"], source_prompt)
        videos = summary.pop("videos")
        self._write_outputs(results, summary, videos, batch["video"][0])
        return {"results": [asdict(r) for r in results], **summary}

    # -- outputs ----------------------------------------------------------------------------------
    def _output_dir(self) -> Path:
        if self.hparams.output_dir:
            return Path(self.hparams.output_dir)
        logger = self.trainer.logger
        root = logger.log_dir if logger is not None and logger.log_dir else self.trainer.default_root_dir
        return Path(root) / "probe"

    def _write_outputs(self, results: list[WindowResult], summary: dict, videos: dict, reference_CFHW) -> None:
        folder = self._output_dir()
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "probe.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(asdict(results[0])))
            writer.writeheader()
            writer.writerows(asdict(r) for r in results)
        (folder / "probe.json").write_text(json.dumps({**summary, "results": [asdict(r) for r in results]}, indent=2))
        png = plot_probe(results, summary["motion_boundary"], summary["num_train_timesteps"],
                         appearance_label=f"{self.clip.score_label}, new prompt")
        (folder / "probe.png").write_bytes(png)
        if self.hparams.save_videos:
            for name, frames in videos.items():
                write_video(folder / "videos" / f"{name}.gif", frames, self._fps())
        tb = tensorboard_writer(self.trainer)
        if tb is None:
            return
        for r in results:
            tb.add_scalar(f"probe/{r.kind}/appearance", r.appearance, r.boundary)
            tb.add_scalar(f"probe/{r.kind}/motion", r.motion, r.boundary)
        if summary["motion_boundary"] is not None:
            tb.add_scalar("probe/motion_boundary", summary["motion_boundary"], 0)
        add_png(tb, "probe/curves", png, 0)
        tb.add_text("probe/table", markdown_table(results, summary), 0)
        add_gif(tb, "probe/reference", to_uint8_frames(reference_CFHW), 0, self._fps())
        if self.hparams.save_videos:
            for name, frames in videos.items():
                add_gif(tb, f"probe/videos/{name}", frames, 0, self._fps())
        tb.flush()


def markdown_table(results: list[WindowResult], summary: dict) -> str:
    boundary = summary["motion_boundary"]
    seeds = results[0].num_seeds if results else 1
    lines = [f"estimated motion boundary t* = {'undefined (no motion drop)' if boundary is None else round(boundary)} "
             f"(T = {summary['num_train_timesteps']}); new prompt: '{summary['edit_prompt']}'; "
             f"mean ± spread over {seeds} seed(s)", "",
             "| window | t range | edited steps | appearance | motion |", "|---|---|---|---|---|"]
    lines += [f"| {r.kind} b={r.boundary} | [{r.window_start}, {r.window_end}] | {r.edited_steps} | "
              f"{r.appearance:.3f} ± {r.appearance_std:.3f} | {r.motion:.3f} ± {r.motion_std:.3f} |" for r in results]
    return "\n".join(lines)


def plot_probe(results: list[WindowResult], motion_boundary: Optional[float], num_train_timesteps: int,
               appearance_label: str = "CLIP score, new prompt") -> bytes:
    """The probe figure as PNG bytes."""
    buffer = io.BytesIO()
    probe_figure(results, motion_boundary, num_train_timesteps, appearance_label).savefig(buffer, format="png")
    return buffer.getvalue()


def probe_figure(results: list[WindowResult], motion_boundary: Optional[float], num_train_timesteps: int,
                 appearance_label: str = "CLIP score, new prompt"):
    """Figure of motion and appearance (mean ± spread over seeds) against the window boundary, late
    (solid) and early (dashed); t* marked, or "t* undefined"; each y axis spans its score's range;
    the legend sits below the axes, off the data. Built on a ``Figure`` (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 (matplotlib, heavy, plots only)
    from matplotlib.figure import Figure  # noqa: PLC0415 (matplotlib, heavy, plots only)

    figure = Figure(figsize=(7.5, 5), dpi=100)
    FigureCanvasAgg(figure)
    motion_axis = figure.add_subplot(1, 1, 1)
    appearance_axis = motion_axis.twinx()
    for kind, style in (("late", "-"), ("early", "--")):
        rows = sorted((r for r in results if r.kind == kind), key=lambda r: r.boundary)
        x = np.array([r.boundary for r in rows], dtype=float)
        label = "new prompt on t < b" if kind == "late" else "new prompt on t ≥ b"
        for axis, values, spread, colour, marker, name in (
                (motion_axis, [r.motion for r in rows], [r.motion_std for r in rows], "tab:blue", "o", "motion M"),
                (appearance_axis, [r.appearance for r in rows], [r.appearance_std for r in rows], "tab:orange", "s",
                 "appearance A")):
            values, spread = np.array(values), np.array(spread)
            axis.plot(x, values, style, marker=marker, color=colour, label=f"{name} ({label})")
            if spread.any():
                axis.fill_between(x, values - spread, values + spread, color=colour, alpha=0.15, linewidth=0)
    if motion_boundary is not None:
        motion_axis.axvline(motion_boundary, color="grey", linestyle=":", label=f"t* ≈ {motion_boundary:.0f}")
    else:
        motion_axis.text(0.5, 0.5, "t* undefined: no motion drop", transform=motion_axis.transAxes, ha="center",
                         va="center", color="grey", fontsize=11, alpha=0.8)
    motion_axis.set_xlim(0, num_train_timesteps)
    motion_axis.set_ylim(-1.05, 1.05)  # motion fidelity lies in [−1, 1]
    appearance_axis.set_ylim(0, 100)  # both appearance scores (CLIP text–frame, toy colour %) lie in [0, 100]
    motion_axis.set_xlabel("window boundary b (training timesteps)")
    motion_axis.set_ylabel("motion fidelity to the reference", color="tab:blue")
    appearance_axis.set_ylabel(appearance_label, color="tab:orange")
    handles = motion_axis.get_legend_handles_labels()[0] + appearance_axis.get_legend_handles_labels()[0]
    labels = motion_axis.get_legend_handles_labels()[1] + appearance_axis.get_legend_handles_labels()[1]
    seeds = results[0].num_seeds if results else 1
    motion_axis.set_title(f"Motion-encoding probe (mean ± spread over {seeds} seed(s))")
    figure.subplots_adjust(left=0.1, right=0.88, top=0.92, bottom=0.32)
    figure.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
    return figure
