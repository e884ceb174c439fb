"""Learned point trackers from a LOCAL file, behind the ``PointTracker`` interface.

- ``CoTrackerTracker``: CoTracker (Karaev et al.) through the ``cotracker`` package's
  ``CoTrackerPredictor`` and a checkpoint file (e.g. ``scaled_offline.pth`` for CoTracker3).
  The package is not on PyPI: install it from a source checkout of facebookresearch/co-tracker
  (``pip install --no-deps /path/to/co-tracker``; it needs no torchvision for the predictor).
- ``ScriptedTracker``: any tracker exported with ``torch.jit.save`` that follows CoTracker's call
  convention — ``module(video_BF3HW in 0..255, queries_BN3 as (t, x, y)) → (tracks_BFN2,
  visibility_BFN)`` — loaded with ``torch.jit.load``. No package needed at run time.

Both return per-step validity from the visibility (a step is trusted when the point is visible in
both frames), which the motion fidelity score uses. Select either by ``class_path`` in the probe
config, e.g. ``tracker: {class_path: lit_video.cotracker.CoTrackerTracker, init_args:
{checkpoint: /data/models/cotracker3/scaled_offline.pth}}``.

Shape legend: B batch (1), F frames, N points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch

from lit_video.errors import VideoInputError
from lit_video.tracking import PointTracker


def _existing_file(path: str, what: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise VideoInputError(f"{what} file {file} does not exist: download it once on a machine with network "
                              "access and point the tracker's checkpoint argument at the local file")
    return file


class _CallConventionTracker(PointTracker):
    """Adapts a ``(video_BF3HW 0..255, queries_BN3) → (tracks_BFN2, visibility_BFN[1])`` callable."""

    model: Callable
    device: str

    @torch.no_grad()
    def track_with_validity(self, video_F3HW: torch.Tensor,
                            queries_N2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        video = (video_F3HW.float().clamp(0, 1) * 255)[None].to(self.device)
        queries = torch.cat([torch.zeros(len(queries_N2), 1), queries_N2.float()], dim=1)[None].to(self.device)
        tracks, visibility = self.model(video, queries)
        tracks_FN2 = tracks[0].float().cpu()
        visible_FN = visibility[0].cpu()
        if visible_FN.dim() == 3:
            visible_FN = visible_FN[..., 0]
        visible_FN = visible_FN > 0.5 if visible_FN.is_floating_point() else visible_FN.bool()
        if tracks_FN2.shape != (video_F3HW.shape[0], len(queries_N2), 2):
            raise VideoInputError(f"tracker returned tracks of shape {tuple(tracks_FN2.shape)}, expected "
                                  f"{(video_F3HW.shape[0], len(queries_N2), 2)}: check the exported model's outputs")
        return tracks_FN2, visible_FN[1:] & visible_FN[:-1]

    def track(self, video_F3HW: torch.Tensor, queries_N2: torch.Tensor) -> torch.Tensor:
        return self.track_with_validity(video_F3HW, queries_N2)[0]


class ScriptedTracker(_CallConventionTracker):
    """A TorchScript tracker from a local file (CoTracker's call convention).

    Args:
        path: File written by ``torch.jit.save``.
        device: Where to run it (``cpu`` or ``cuda``).
    """

    def __init__(self, path: str, device: str = "cpu") -> None:
        self.device = device
        self.model = torch.jit.load(str(_existing_file(path, "TorchScript tracker")), map_location=device).eval()


class CoTrackerTracker(_CallConventionTracker):
    """CoTracker from a local checkpoint through the ``cotracker`` package.

    Args:
        checkpoint: Local CoTracker checkpoint (``.pth``), e.g. CoTracker3's ``scaled_offline.pth``.
        offline: The offline (bidirectional) model (CoTracker3); ``False`` for the online one.
        window_len: The model's sliding-window length (60 for CoTracker3 offline).
        device: Where to run it (``cpu`` or ``cuda``).
    """

    def __init__(self, checkpoint: str, offline: bool = True, window_len: Optional[int] = 60,
                 device: str = "cpu") -> None:
        file = _existing_file(checkpoint, "CoTracker checkpoint")
        try:
            from cotracker.predictor import CoTrackerPredictor  # noqa: PLC0415 (optional cotracker package)
        except ImportError as error:
            raise VideoInputError(f"CoTrackerTracker needs the cotracker package ({error}), which is not on PyPI: "
                                  "install it from a source checkout (pip install --no-deps /path/to/co-tracker) "
                                  "or use lit_video.tracking.LucasKanadeTracker") from None
        self.device = device
        predictor = CoTrackerPredictor(checkpoint=str(file), offline=offline, window_len=window_len)
        self.predictor = predictor.to(device).eval()
        self.model = lambda video, queries: self.predictor(video, queries=queries)
