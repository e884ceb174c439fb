"""Motion fidelity score on point tracks (after Yatim et al., "Space-Time Diffusion Features for
Zero-Shot Text-Driven Motion Transfer"), from any ``PointTracker``.

Definition (range [−1, 1]; identical motion → 1, reversed constant motion → −1, no motion vs motion → 0):

1. Displacements. For each track, displacements over the lags ``lags`` (``p[f+k] − p[f]``; default
   ``window_lags(F)`` = half the window and the whole window, e.g. 8 and 15 frames of a 16-frame
   clip). Single-frame steps of jittery real motion (hand-held camera, a talking head) look alike
   played forwards and backwards; the displacement over the window is what reverses. A displacement
   is trusted only if the tracker trusted every frame step inside it; an untrusted one counts as no
   displacement.
2. Still rule (magnitude weighting). Displacements shorter than ``still_threshold`` pixels are
   still. Comparing track τ (video a) with τ' (video b), each displacement pair gets the weight
   w = (|u| + |u'|) / 2 and the cosine of the two directions (0 when exactly one is still), and
   corr(τ, τ') = Σ w·cos / Σ w. A pair of still displacements has weight 0: it is neither
   agreement (no free pass for two frozen clips) nor disagreement — it simply carries no motion.
   Near-still jitter (tracker noise, a still background with sensor noise) weighs in proportion to
   its tiny length, so it barely moves the score.
3. Matching, chosen by ``match``:
   - ``"trajectory"`` (default of ``video_motion_fidelity``): each track of a is compared with the
     track of b whose path is nearest (mean distance over the frames): the same part of the scene.
     This is the score for candidates of the same scene (the probe's re-samples, a LoRA's samples
     of the reference prompt). It has no selection bias: taking the best of several correlations
     would turn unrelated jitter into apparent agreement (time-reversed camera shake scored up to
     +0.58 that way on the real test clip; −0.6 median with the nearest path).
   - ``"correlation"``: each track's best-correlated track of b that started within ``match_radius``
     pixels (``None``: anywhere, the original definition) — for motion transferred to a different
     subject at another place in the frame.
4. Aggregation. score_a→b = Σ_τ W_τ · corr(τ, match(τ)) / Σ_τ W_τ, where W_τ is track τ's total
   displacement length; the score is the mean of a→b and b→a. A video without any displacement has
   no motion to match: its direction scores 1 if the other video has none either, else 0.

Shape legend: F frames, S displacement slots (all lags), N/M tracks.
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence

import torch

from lit_video.tracking import PointTracker, grid_queries

Matching = Literal["trajectory", "correlation"]


def window_lags(frames: int) -> tuple[int, ...]:
    """The default lags of an F-frame window: ⌈(F − 1) / 2⌉ and F − 1 (8 and 15 for 16 frames)."""
    if frames < 2:
        raise ValueError(f"motion needs at least 2 frames, got {frames}")
    return tuple(sorted({frames // 2, frames - 1}))


def lagged_displacements(tracks_FN2: torch.Tensor, valid_steps_FN: Optional[torch.Tensor] = None,
                         lags: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Displacements ``p[f+k] − p[f]`` for every lag k < F (``None``: ``window_lags(F)``), stacked:
    (S, N, 2) in float64; a displacement over an untrusted frame step is zero."""
    tracks = tracks_FN2.double()
    frames = tracks.shape[0]
    lags = window_lags(frames) if lags is None else lags
    if valid_steps_FN is None:
        valid_steps_FN = torch.ones(frames - 1, tracks.shape[1], dtype=torch.bool)
    trusted = torch.cat([torch.zeros_like(valid_steps_FN[:1], dtype=torch.long),
                         valid_steps_FN.long().cumsum(0)])  # (F, N): trusted steps before frame f
    parts = []
    for lag in sorted(set(int(k) for k in lags)):
        if lag < 1 or lag >= frames:
            continue
        ok = (trusted[lag:] - trusted[:-lag]) == lag
        parts.append(torch.where(ok[..., None], tracks[lag:] - tracks[:-lag], 0.0))
    return torch.cat(parts)


def track_correlations(tracks_a_FN2: torch.Tensor, tracks_b_FM2: torch.Tensor,
                       valid_a_FN: Optional[torch.Tensor] = None, valid_b_FM: Optional[torch.Tensor] = None,
                       lags: Optional[Sequence[int]] = None, still_threshold: float = 1e-3) -> torch.Tensor:
    """Magnitude-weighted corr(τ_n, τ'_m) for every pair of tracks: (N, M) in [−1, 1] (0 for two
    tracks that never move)."""
    motion_a, motion_b = _motions(tracks_a_FN2, tracks_b_FM2, valid_a_FN, valid_b_FM, lags, still_threshold)
    return _correlations(*motion_a, *motion_b)


def _motions(tracks_a_FN2, tracks_b_FM2, valid_a_FN, valid_b_FM, lags, still_threshold):
    """((displacements, lengths) of a, (displacements, lengths) of b), computed once for both uses."""
    if tracks_a_FN2.shape[0] != tracks_b_FM2.shape[0] or tracks_a_FN2.shape[0] < 2:
        raise ValueError(f"both track sets need the same number (≥ 2) of frames, got {tracks_a_FN2.shape[0]} "
                         f"and {tracks_b_FM2.shape[0]}")
    motion_a_SN2 = lagged_displacements(tracks_a_FN2, valid_a_FN, lags)
    motion_b_SM2 = lagged_displacements(tracks_b_FM2, valid_b_FM, lags)
    return ((motion_a_SN2, _lengths(motion_a_SN2, still_threshold)),
            (motion_b_SM2, _lengths(motion_b_SM2, still_threshold)))


def _correlations(motion_a_SN2: torch.Tensor, length_a_SN: torch.Tensor, motion_b_SM2: torch.Tensor,
                  length_b_SM: torch.Tensor) -> torch.Tensor:
    unit_a = torch.where(length_a_SN[..., None] > 0, motion_a_SN2 / length_a_SN.clamp_min(1e-12)[..., None], 0.0)
    unit_b = torch.where(length_b_SM[..., None] > 0, motion_b_SM2 / length_b_SM.clamp_min(1e-12)[..., None], 0.0)
    cosine_SNM = torch.einsum("snc,smc->snm", unit_a, unit_b)  # 0 where either is still (zero unit vector)
    weight_SNM = 0.5 * (length_a_SN[:, :, None] + length_b_SM[:, None, :])
    total_NM = weight_SNM.sum(0)
    return torch.where(total_NM > 0, (weight_SNM * cosine_SNM).sum(0) / total_NM.clamp_min(1e-300), 0.0).float()


def _lengths(motion_SN2: torch.Tensor, still_threshold: float) -> torch.Tensor:
    length = motion_SN2.norm(dim=-1)
    return torch.where(length > still_threshold, length, 0.0)


def motion_fidelity_score(tracks_a_FN2: torch.Tensor, tracks_b_FM2: torch.Tensor,
                          valid_a_FN: Optional[torch.Tensor] = None, valid_b_FM: Optional[torch.Tensor] = None,
                          lags: Optional[Sequence[int]] = None, still_threshold: float = 1e-3,
                          match: Matching = "trajectory", match_radius: Optional[float] = None) -> float:
    """Symmetric, motion-weighted motion fidelity of two track sets over the same frames.

    ``match``: ``"trajectory"`` compares each track with the other video's nearest path;
    ``"correlation"`` with its best-correlated track that started within ``match_radius`` pixels
    (``None``: all tracks). ``match_radius`` applies to ``"correlation"`` only.
    """
    if match not in ("trajectory", "correlation"):
        raise ValueError(f"match must be 'trajectory' or 'correlation', got {match!r}")
    motion_a, motion_b = _motions(tracks_a_FN2, tracks_b_FM2, valid_a_FN, valid_b_FM, lags, still_threshold)
    correlation_NM = _correlations(*motion_a, *motion_b).double()
    if match == "trajectory":
        path_distance_NM = (tracks_a_FN2.double()[:, :, None] - tracks_b_FM2.double()[:, None]).norm(dim=-1).mean(0)
        best_a_N = correlation_NM.gather(1, path_distance_NM.argmin(1, keepdim=True))[:, 0]
        best_b_M = correlation_NM.gather(0, path_distance_NM.argmin(0, keepdim=True))[0]
    else:
        if match_radius is not None:
            distance_NM = torch.cdist(tracks_a_FN2[0].double(), tracks_b_FM2[0].double())
            correlation_NM = torch.where(distance_NM <= match_radius, correlation_NM, -math.inf)
        best_a_N, best_b_M = correlation_NM.max(dim=1).values, correlation_NM.max(dim=0).values
    weight_a_N, weight_b_M = motion_a[1].sum(0), motion_b[1].sum(0)

    def direction(best: torch.Tensor, weight: torch.Tensor, other_weight: torch.Tensor) -> float:
        if not weight.sum() > 0:  # this video has no motion to find in the other one
            return 1.0 if not other_weight.sum() > 0 else 0.0
        best = torch.where(best.isfinite(), best, 0.0)  # no candidate within the radius: nothing matched
        return float((weight * best).sum() / weight.sum())

    return 0.5 * (direction(best_a_N, weight_a_N, weight_b_M) + direction(best_b_M, weight_b_M, weight_a_N))


class MotionFidelity:
    """Motion fidelity of candidate videos to one reference video, whose grid is tracked once (the
    probe, the samplers and the toy evaluation score many candidates against the same clip).

    Tracks a ``grid_size``² grid of points (``margin_fraction`` away from the borders) through each
    video (pixels in [0, 1], (F, 3, H, W)). ``match``: ``"trajectory"`` (same scene: nearest path) or
    ``"correlation"`` (best-correlated track within ``match_radius_fraction`` of the frame diagonal;
    ``None``: anywhere).
    """

    def __init__(self, reference_F3HW: torch.Tensor, tracker: PointTracker, grid_size: int = 10,
                 margin_fraction: float = 0.1, match: Matching = "trajectory",
                 match_radius_fraction: Optional[float] = 0.1, lags: Optional[Sequence[int]] = None,
                 still_threshold: float = 1e-3) -> None:
        height, width = reference_F3HW.shape[-2:]
        self.tracker, self.match, self.lags, self.still_threshold = tracker, match, lags, still_threshold
        self.queries = grid_queries(height, width, grid_size, margin_fraction)
        self.reference_tracks, self.reference_valid = tracker.track_with_validity(reference_F3HW, self.queries)
        self.radius = None if match_radius_fraction is None else match_radius_fraction * math.hypot(height, width)

    def __call__(self, candidate_F3HW: torch.Tensor) -> float:
        tracks, valid = self.tracker.track_with_validity(candidate_F3HW, self.queries)
        return motion_fidelity_score(self.reference_tracks, tracks, self.reference_valid, valid, self.lags,
                                     self.still_threshold, self.match, self.radius)


def video_motion_fidelity(reference_F3HW: torch.Tensor, candidate_F3HW: torch.Tensor, tracker: PointTracker,
                          grid_size: int = 10, margin_fraction: float = 0.1, match: Matching = "trajectory",
                          match_radius_fraction: Optional[float] = 0.1, lags: Optional[Sequence[int]] = None,
                          still_threshold: float = 1e-3) -> float:
    """The motion fidelity of one candidate to one reference (``MotionFidelity``'s arguments)."""
    return MotionFidelity(reference_F3HW, tracker, grid_size, margin_fraction, match, match_radius_fraction, lags,
                          still_threshold)(candidate_F3HW)
