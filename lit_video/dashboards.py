"""TensorBoard output for videos and figures: animated GIFs and PNGs as image summaries.

``SummaryWriter.add_video`` silently writes nothing without moviepy < 2 (spec §4), so GIFs are
encoded here with PIL and written as image summaries, which TensorBoard's Images tab animates.
"""

from __future__ import annotations

import io
import re
from typing import Optional

import numpy as np
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary

from lit_video.video_io import encode_gif


def tensorboard_writer(trainer) -> Optional[object]:
    """The ``SummaryWriter`` of the trainer's TensorBoardLogger, or ``None`` if it has none."""

    for logger in getattr(trainer, "loggers", []) or []:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def slug(text: str, max_length: int = 48) -> str:
    """A tag/file-name-safe version of a prompt."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:max_length] or "empty"


def _add_encoded_image(writer, tag: str, encoded: bytes, height: int, width: int, step: int) -> None:

    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=encoded)
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


def add_gif(writer, tag: str, frames: np.ndarray, step: int, fps: float = 8.0) -> None:
    """Logs uint8 frames (F, H, W, 3) as an animated GIF image summary."""
    _add_encoded_image(writer, tag, encode_gif(frames, fps), frames.shape[1], frames.shape[2], step)


def add_png(writer, tag: str, png: bytes, step: int) -> None:
    """Logs an encoded PNG (e.g. a matplotlib figure) as an image summary."""

    width, height = Image.open(io.BytesIO(png)).size
    _add_encoded_image(writer, tag, png, height, width, step)
