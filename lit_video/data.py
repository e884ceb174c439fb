"""One reference video and its prompt, as a LightningDataModule.

Every problem with the input (missing or unreadable file, not a video, too few frames, empty
prompt, bad sizes) raises one ``VideoInputError`` from ``__init__``, i.e. when the CLI builds the
config and before the trainer runs or writes anything.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from lit_video.errors import VideoInputError
from lit_video.video_io import frames_to_tensor, moving_shapes_frames, read_video, write_video


class RepeatedClip(Dataset):
    """The same (clip, prompt) pair ``length`` times: one epoch = ``length`` optimizer steps."""

    def __init__(self, video_CFHW: torch.Tensor, prompt: str, length: int) -> None:
        self.video_CFHW, self.prompt, self.length = video_CFHW, prompt, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return {"video": self.video_CFHW, "prompt": self.prompt}


def generated_demo_clip(directory: Optional[str], num_frames: int, height: int, width: int) -> Path:
    """Writes (once) and returns the moving-shapes demo clip under ``directory`` or the temp dir."""
    folder = Path(directory) if directory else Path(tempfile.gettempdir()) / "lit_video"
    path = folder / f"moving_shapes_{num_frames}x{height}x{width}.mp4"
    if not path.exists():  # several processes (DDP ranks, parallel runs) may write it at once
        temporary = path.with_name(f".{path.stem}.{os.getpid()}.partial.mp4")  # one per writer; .mp4: the container
        try:
            write_video(temporary, moving_shapes_frames(num_frames, height, width), fps=8)
            temporary.replace(path)  # atomic: readers see no file or the whole clip
        finally:
            temporary.unlink(missing_ok=True)
    return path


class ReferenceVideoDataModule(pl.LightningDataModule):
    """Loads a clip (mp4/webm/gif via PyAV, or a folder of frames), picks frames, resizes, serves it.

    Args:
        prompt: Text describing the reference video (what it was customised on).
        video_path: Video file or folder of frame images. ``None`` generates a moving-shapes clip
            (the self-contained demo) under ``generated_clip_dir``.
        num_frames: Frames taken from the clip.
        frame_stride: Take every ``frame_stride``-th frame.
        start_frame: Index of the first frame taken.
        height: Training height in pixels (the clip is resized to cover and centre-cropped).
        width: Training width in pixels.
        steps_per_epoch: Length of one epoch in optimizer steps (the clip repeats).
        generated_clip_dir: Where the demo clip is written when ``video_path`` is ``None``
            (default: ``<system temp dir>/lit_video``).
    """

    def __init__(self, prompt: str, video_path: Optional[str] = None, num_frames: int = 16, frame_stride: int = 1,
                 start_frame: int = 0, height: int = 256, width: int = 256, steps_per_epoch: int = 100,
                 generated_clip_dir: Optional[str] = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not prompt or not prompt.strip():
            raise VideoInputError("data.prompt is empty: describe the reference video in a few words, e.g. "
                                  "'a car driving along a road'")
        if num_frames < 2 or frame_stride < 1 or start_frame < 0 or steps_per_epoch < 1:
            raise VideoInputError(f"need num_frames ≥ 2, frame_stride ≥ 1, start_frame ≥ 0, steps_per_epoch ≥ 1; got "
                                  f"{num_frames}, {frame_stride}, {start_frame}, {steps_per_epoch}: "
                                  f"fix these data.* values")
        if height % 8 or width % 8 or height <= 0 or width <= 0:
            raise VideoInputError(f"data.height and data.width must be positive multiples of 8 (the VAE downsamples "
                                  f"by up to 8 and the UNet halves the latent again); got {height}×{width}: "
                                  f"use e.g. 256×256 or 576×320")
        needed = start_frame + (num_frames - 1) * frame_stride + 1
        path = Path(video_path) if video_path else generated_demo_clip(generated_clip_dir, needed, height, width)
        picked, self.fps = read_video(path, start_frame, num_frames, frame_stride, cover_size=(height, width))
        if len(picked) < num_frames:
            raise VideoInputError(
                f"{path} has fewer than {needed} frames (it ends after {len(picked)} of the {num_frames} frames "
                f"picked): num_frames={num_frames}, frame_stride={frame_stride}, start_frame={start_frame} need "
                f"{needed}: lower data.num_frames, data.frame_stride or data.start_frame, or use a longer clip")
        self.video_path = path
        self.prompt = prompt.strip()
        self.video_CFHW = frames_to_tensor(picked, height, width)  # pixels in [-1, 1]

    @property
    def clip_fps(self) -> float:
        """Playback rate of the frames taken: the file's fps divided by ``frame_stride``."""
        return self.fps / self.hparams.frame_stride

    def train_dataloader(self) -> DataLoader:
        return DataLoader(RepeatedClip(self.video_CFHW, self.prompt, self.hparams.steps_per_epoch), batch_size=1)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(RepeatedClip(self.video_CFHW, self.prompt, 1), batch_size=1)
