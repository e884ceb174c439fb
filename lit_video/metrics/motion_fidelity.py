"""Motion fidelity score on point tracks (after Yatim et al., "Space-Time Diffusion Features for
Zero-Shot Text-Driven Motion Transfer"), from any ``PointTracker``.

Definition (range [−1, 1]; identical motion → 1, reversed constant motion → −1, no motion vs motion → 0):

1. Displacements. For each track, displacements over the lags ``lags`` (default 1, 2, 4, 8
   frames: ``p[f+k] − p[f]``), so a jittery motion and its time reversal differ in the lag-8 terms
   even when single-frame steps look alike. A displacement is trusted only if the tracker trusted
   every frame step inside it; an untrusted one counts as no displacement.
2. Still rule (magnitude weighting). Displacements shorter than ``still_threshold`` pixels are
   still. Comparing track τ (video a) with τ' (video b), each displacement pair gets the weight
   w = (|u| + |u'|) / 2 and the cosine of the two directions (0 when exactly one is still), and
   corr(τ, τ') = Σ w·cos / Σ w. A pair of still displacements has weight 0: it is neither
   agreement (no free pass for two frozen clips) nor disagreement — it simply carries no motion.
   Near-still jitter (tracker noise, a still background with sensor noise) weighs in proportion to
   its tiny length, so it barely moves the score.
3. Best match. Each track of a is matched to its best-correlated track of b that started within
   ``match_radius`` pixels of it (``None``: anywhere in the frame, the original definition; a
   radius keeps a lucky match on the other side of the frame from passing as preserved motion).
4. Aggregation. score_a→b = Σ_τ W_τ · max corr / Σ_τ W_τ, where W_τ is track τ's total
   displacement length; the score is the mean of a→b and b→a. A video without any displacement
   has no motion to match: its direction scores 1 if the other video has none either, else 0.

Shape legend: F frames, S displacement slots (all lags), N/M tracks.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from lit_video.tracking import PointTracker, grid_queries

DEFAULT_LAGS = (1, 2, 4, 8)


def lagged_displacements(tracks_FN2: torch.Tensor, valid_steps_FN: Optional[torch.Tensor] = None,
                         lags: Sequence[int] = DEFAULT_LAGS) -> torch.Tensor:
    """Displacements ``p[f+k] − p[f]`` for every lag k < F, stacked: (S, N, 2) in float64; a
    displacement over an untrusted frame step is zero."""
    tracks = tracks_FN2.double()
    frames = tracks.shape[0]
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
                       lags: Sequence[int] = DEFAULT_LAGS, still_threshold: float = 1e-3) -> torch.Tensor:
    """Magnitude-weighted corr(τ_n, τ'_m) for every pair of tracks: (N, M) in [−1, 1] (0 for two
    tracks that never move)."""
    if tracks_a_FN2.shape[0] != tracks_b_FM2.shape[0] or tracks_a_FN2.shape[0] < 2:
        raise ValueError(f"both track sets need the same number (≥ 2) of frames, got {tracks_a_FN2.shape[0]} "
                         f"and {tracks_b_FM2.shape[0]}")
    motion_a_SN2 = lagged_displacements(tracks_a_FN2, valid_a_FN, lags)
    motion_b_SM2 = lagged_displacements(tracks_b_FM2, valid_b_FM, lags)
    length_a_SN, length_b_SM = _lengths(motion_a_SN2, still_threshold), _lengths(motion_b_SM2, still_threshold)
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
                          lags: Sequence[int] = DEFAULT_LAGS, still_threshold: float = 1e-3,
                          match_radius: Optional[float] = None) -> float:
    """Symmetric, motion-weighted best-match motion fidelity of two track sets over the same frames.

    ``match_radius`` (pixels): candidates for a track's best match are the other video's tracks
    that started within this distance of it (``None``: all tracks).
    """
    correlation_NM = track_correlations(tracks_a_FN2, tracks_b_FM2, valid_a_FN, valid_b_FM, lags,
                                        still_threshold).double()
    if match_radius is not None:
        distance_NM = torch.cdist(tracks_a_FN2[0].double(), tracks_b_FM2[0].double())
        correlation_NM = torch.where(distance_NM <= match_radius, correlation_NM, -math.inf)
    weight_a_N = _lengths(lagged_displacements(tracks_a_FN2, valid_a_FN, lags), still_threshold).sum(0)
    weight_b_M = _lengths(lagged_displacements(tracks_b_FM2, valid_b_FM, lags), still_threshold).sum(0)

    def direction(best: torch.Tensor, weight: torch.Tensor, other_weight: torch.Tensor) -> float:
        if not weight.sum() > 0:  # this video has no motion to find in the other one
            return 1.0 if not other_weight.sum() > 0 else 0.0
        best = torch.where(best.isfinite(), best, 0.0)  # no candidate within the radius: nothing matched
        return float((weight * best).sum() / weight.sum())

    return 0.5 * (direction(correlation_NM.max(dim=1).values, weight_a_N, weight_b_M)
                  + direction(correlation_NM.max(dim=0).values, weight_b_M, weight_a_N))


def video_motion_fidelity(reference_F3HW: torch.Tensor, candidate_F3HW: torch.Tensor, tracker: PointTracker,
                          grid_size: int = 10, margin_fraction: float = 0.1,
                          match_radius_fraction: Optional[float] = 0.1, lags: Sequence[int] = DEFAULT_LAGS,
                          still_threshold: float = 1e-3) -> float:
    """Tracks a ``grid_size``² grid of points (``margin_fraction`` away from the borders) through both
    videos (pixels in [0, 1], (F, 3, H, W)) and scores their motion.

    ``match_radius_fraction``: best matches are searched within this fraction of the frame diagonal
    (``None``: anywhere).
    """
    height, width = reference_F3HW.shape[-2:]
    queries = grid_queries(height, width, grid_size, margin_fraction)
    tracks_a, valid_a = tracker.track_with_validity(reference_F3HW, queries)
    tracks_b, valid_b = tracker.track_with_validity(candidate_F3HW, queries)
    radius = None if match_radius_fraction is None else match_radius_fraction * math.hypot(height, width)
    return motion_fidelity_score(tracks_a, tracks_b, valid_a, valid_b, lags, still_threshold, radius)
