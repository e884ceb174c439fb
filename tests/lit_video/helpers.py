"""Shared helpers of the lit_video tests: paths, the real clip, small latents."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_CLIP = REPO_ROOT.parent / "shared" / "data" / "carphone_pristine.mp4"


def small_latents(batch: int = 1, frames: int = 2, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 4, frames, size, size, generator=torch.Generator().manual_seed(seed))


def real_clip_or_skip() -> Path:
    """The real 176×144, 120-frame carphone clip from ../shared, or skip the test when it is absent."""
    if not REAL_CLIP.is_file():
        pytest.skip(f"real clip {REAL_CLIP} is absent (../shared not laid out beside the repo)")
    return REAL_CLIP


def real_clip_frames(start: int = 0, stop: int = 120, stride: int = 1) -> torch.Tensor:
    """Frames [start:stop:stride] of the real clip as (F, 3, H, W) in [0, 1] (skips when absent)."""
    from lit_video.video_io import read_video

    frames, _ = read_video(real_clip_or_skip(), start_frame=start, num_frames=len(range(start, stop, stride)),
                           frame_stride=stride)
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
