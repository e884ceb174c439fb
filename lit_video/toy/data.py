"""A toy-world clip as the reference video: rendered losslessly to PNG frames, then served by
``ReferenceVideoDataModule`` (so everything downstream reads it exactly like a real clip)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

from PIL import Image

from lit_core.io import atomic_write
from lit_video.data import ReferenceVideoDataModule
from lit_video.errors import VideoInputError
from lit_video.toy.world import COLOURS, DIRECTIONS, SHAPES, centred_spec, render_clip


def write_toy_clip(colour: str, shape: str, direction: str, num_frames: int, height: int, width: int,
                   directory: Optional[str] = None) -> Path:
    """Writes the centred toy clip as ``frame_000.png …`` into a folder and returns the folder."""
    root = Path(directory) if directory else Path(tempfile.gettempdir()) / "lit_video" / "toy_clips"
    folder = root / f"{colour}_{shape}_{direction}_{num_frames}x{height}x{width}"
    folder.mkdir(parents=True, exist_ok=True)
    frames = render_clip(centred_spec(colour, shape, direction, num_frames, height, width), num_frames, height, width)
    for index, frame in enumerate(frames):  # atomic: a concurrent reader (another rank) never sees half a PNG
        atomic_write(folder / f"frame_{index:03d}.png", lambda handle, f=frame: Image.fromarray(f).save(handle, "PNG"))
    return folder


class ToyReferenceDataModule(ReferenceVideoDataModule):
    """The reference clip of a toy demo: one shape of one colour crossing the frame centre.

    Args:
        colour: Colour of the shape (red, green, blue, yellow).
        shape: square, circle or triangle.
        direction: right, left, down or up.
        prompt: Text the clip is trained/inverted with; ``None``: "a {colour} {shape} moving {direction}".
        num_frames: Frames of the clip.
        height: Frame height (a multiple of 8).
        width: Frame width (a multiple of 8).
        steps_per_epoch: Optimizer steps per epoch (the clip repeats).
        clip_dir: Where the PNG frames are written (default: ``<system temp dir>/lit_video/toy_clips``).
    """

    def __init__(self, colour: str = "red", shape: str = "square", direction: str = "right",
                 prompt: Optional[str] = None, num_frames: int = 8, height: int = 32, width: int = 32,
                 steps_per_epoch: int = 100, clip_dir: Optional[str] = None) -> None:
        if colour not in COLOURS or shape not in SHAPES or direction not in DIRECTIONS:
            raise VideoInputError(f"toy clip: colour must be one of {list(COLOURS)}, shape one of {list(SHAPES)}, "
                                  f"direction one of {list(DIRECTIONS)}; got {colour!r}, {shape!r}, {direction!r}")
        folder = write_toy_clip(colour, shape, direction, num_frames, height, width, clip_dir)
        super().__init__(prompt=prompt or f"a {colour} {shape} moving {direction}", video_path=str(folder),
                         num_frames=num_frames, height=height, width=width, steps_per_epoch=steps_per_epoch)
