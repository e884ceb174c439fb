"""The toy world's appearance score (CLIP is not available offline): which palette colour dominates
the moving shape, and how much of the shape has the colour the prompt names.

A pixel belongs to "the shape" when it is saturated (max − min channel > ``saturation_threshold``
on 0..255; the background is grey); each such pixel votes for the nearest palette colour in RGB.

Shape legend: F frames, H/W height/width.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from lit_video.errors import VideoInputError
from lit_video.toy.world import COLOURS, parse_prompt

PALETTE_K3 = np.array(list(COLOURS.values()), dtype=np.float32)
NAMES = list(COLOURS)


def colour_votes(frames_FHW3: np.ndarray, saturation_threshold: float = 60.0) -> dict[str, float]:
    """Fraction of the saturated pixels nearest to each palette colour (empty dict: none saturated)."""
    pixels_P3 = frames_FHW3.reshape(-1, 3).astype(np.float32)
    saturated_P3 = pixels_P3[pixels_P3.max(1) - pixels_P3.min(1) > saturation_threshold]
    if len(saturated_P3) == 0:
        return {}
    nearest_P = ((saturated_P3[:, None, :] - PALETTE_K3[None]) ** 2).sum(-1).argmin(1)
    counts_K = np.bincount(nearest_P, minlength=len(NAMES)) / len(nearest_P)
    return {name: float(count) for name, count in zip(NAMES, counts_K)}


def dominant_colour(frames_FHW3: np.ndarray, saturation_threshold: float = 60.0) -> Optional[str]:
    """The palette colour most saturated pixels are nearest to; ``None`` when nothing is saturated."""
    votes = colour_votes(frames_FHW3, saturation_threshold)
    return max(votes, key=votes.get) if votes else None


def colour_agreement(frames_FHW3: np.ndarray, prompt: str, saturation_threshold: float = 60.0) -> float:
    """Percent (0..100) of the shape's pixels whose colour is the one ``prompt`` names (0 if no shape)."""
    colour = parse_prompt(prompt)[0]
    if colour is None:
        raise VideoInputError(f"prompt {prompt!r} names no toy colour ({', '.join(NAMES)}): the colour score needs one")
    return 100.0 * colour_votes(frames_FHW3, saturation_threshold).get(colour, 0.0)


class ColourScorer:
    """Drop-in for ``CLIPVideoScorer.text_frame_score`` in the toy world: the colour agreement (0..100)."""

    score_label = "% of the shape in the prompt's colour"  # what ``text_frame_score`` measures, for plot axes

    def __init__(self, saturation_threshold: float = 60.0) -> None:
        self.saturation_threshold = saturation_threshold

    def text_frame_score(self, frames_FHW3: np.ndarray, prompt: str) -> float:
        return colour_agreement(frames_FHW3, prompt, self.saturation_threshold)
