"""Moving-shape clips with prompts that name colour, shape and direction, deterministic from a seed.

One flat shape (square, circle, triangle) of one saturated colour moves in a straight line at a
constant speed over a plain grey background; the prompt says what and where to: "a red square
moving right". Frames are uint8 numpy arrays (F, H, W, 3).

Shape legend: F frames, H/W height/width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from lit_video.errors import VideoInputError

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 60, 230), "yellow": (230, 220, 30)}
SHAPES = ("square", "circle", "triangle")
DIRECTIONS: dict[str, tuple[int, int]] = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}  # (dx, dy)
BACKGROUND = (128, 128, 128)


@dataclass(frozen=True)
class ClipSpec:
    """What one clip shows; ``x0``, ``y0`` is the shape's centre in the first frame (pixels)."""

    colour: str
    shape: str
    direction: str
    x0: float
    y0: float

    def prompt(self, with_direction: bool = True) -> str:
        text = f"a {self.colour} {self.shape} moving"
        return f"{text} {self.direction}" if with_direction else text


def words() -> list[str]:
    """Every word a toy prompt can contain (the word-level tokenizer's vocabulary)."""
    return ["a", "moving", *COLOURS, *SHAPES, *DIRECTIONS]


def parse_prompt(prompt: str) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """(colour, shape, direction) named in a prompt; ``None`` for what it does not name."""
    tokens = prompt.lower().split()
    pick = lambda names: next((t for t in tokens if t in names), None)  # noqa: E731
    return pick(COLOURS), pick(SHAPES), pick(DIRECTIONS)


def shape_mask(shape: str, cx: float, cy: float, size: float, height: int, width: int) -> np.ndarray:
    """Boolean (H, W) mask of a shape of side/diameter ``size`` centred at (cx, cy)."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32) + 0.5
    half = size / 2
    if shape == "square":
        return (np.abs(xx - cx) <= half) & (np.abs(yy - cy) <= half)
    if shape == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= half ** 2
    if shape == "triangle":  # apex up, base at the bottom
        inside_height = (yy >= cy - half) & (yy <= cy + half)
        return inside_height & (np.abs(xx - cx) <= (yy - (cy - half)) / 2)
    raise VideoInputError(f"unknown toy shape {shape!r}: use one of {', '.join(SHAPES)}")


def render_clip(spec: ClipSpec, num_frames: int = 8, height: int = 32, width: int = 32, size: Optional[float] = None,
                speed: Optional[float] = None) -> np.ndarray:
    """The clip (F, H, W, 3) uint8 for ``spec``; ``size`` defaults to 0.34·H, ``speed`` (pixels per
    frame) to what crosses 0.45·W over the clip."""
    if spec.colour not in COLOURS or spec.direction not in DIRECTIONS:
        raise VideoInputError(f"toy clip needs a colour in {list(COLOURS)} and a direction in {list(DIRECTIONS)}, "
                              f"got {spec.colour!r}, {spec.direction!r}")
    size = size if size is not None else 0.34 * height
    speed = speed if speed is not None else 0.45 * min(height, width) / max(1, num_frames - 1)
    dx, dy = DIRECTIONS[spec.direction]
    frames_FHW3 = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for index in range(num_frames):
        frame = np.empty((height, width, 3), dtype=np.uint8)
        frame[:] = BACKGROUND
        frame[shape_mask(spec.shape, spec.x0 + dx * speed * index, spec.y0 + dy * speed * index, size,
                         height, width)] = COLOURS[spec.colour]
        frames_FHW3[index] = frame
    return frames_FHW3


def start_range(direction: str, num_frames: int, height: int,
                width: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """(x range, y range) of first-frame centres that keep the whole path inside the frame."""
    size = 0.34 * height
    travel = 0.45 * min(height, width)
    margin = size / 2 + 1
    dx, dy = DIRECTIONS[direction]

    def axis(d: int, extent: int) -> tuple[float, float]:
        low, high = margin, extent - margin
        if d > 0:
            return low, high - travel
        if d < 0:
            return low + travel, high
        return low, high

    return axis(dx, width), axis(dy, height)


def random_spec(rng: np.random.Generator, num_frames: int = 8, height: int = 32, width: int = 32) -> ClipSpec:
    """A uniformly drawn colour × shape × direction with a random start that stays in frame."""
    colour = str(rng.choice(list(COLOURS)))
    shape = str(rng.choice(SHAPES))
    direction = str(rng.choice(list(DIRECTIONS)))
    (x_low, x_high), (y_low, y_high) = start_range(direction, num_frames, height, width)
    return ClipSpec(colour, shape, direction, float(rng.uniform(x_low, x_high)), float(rng.uniform(y_low, y_high)))


def centred_spec(colour: str, shape: str, direction: str, num_frames: int = 8, height: int = 32,
                 width: int = 32) -> ClipSpec:
    """The clip whose path is centred in the frame (the reference clips of the demos)."""
    (x_low, x_high), (y_low, y_high) = start_range(direction, num_frames, height, width)
    return ClipSpec(colour, shape, direction, (x_low + x_high) / 2, (y_low + y_high) / 2)


class ToyWorld:
    """An endless, seeded stream of (clip, prompt) pairs.

    Args:
        seed: Seed of the stream (the same seed gives the same clips and prompts).
        num_frames: Frames per clip.
        height: Frame height in pixels.
        width: Frame width in pixels.
        drop_direction_probability: Fraction of prompts that omit the direction ("a red square
            moving"), so the model also learns to sample a direction itself.
        drop_prompt_probability: Fraction of empty prompts (the unconditional branch of CFG).
    """

    def __init__(self, seed: int = 0, num_frames: int = 8, height: int = 32, width: int = 32,
                 drop_direction_probability: float = 0.25, drop_prompt_probability: float = 0.1) -> None:
        self.rng = np.random.default_rng(seed)
        self.num_frames, self.height, self.width = num_frames, height, width
        self.drop_direction_probability = drop_direction_probability
        self.drop_prompt_probability = drop_prompt_probability

    def sample(self) -> tuple[np.ndarray, str, ClipSpec]:
        spec = random_spec(self.rng, self.num_frames, self.height, self.width)
        frames = render_clip(spec, self.num_frames, self.height, self.width)
        draw = self.rng.random()
        if draw < self.drop_prompt_probability:
            prompt = ""
        else:
            prompt = spec.prompt(with_direction=draw >= self.drop_prompt_probability + self.drop_direction_probability)
        return frames, prompt, spec
