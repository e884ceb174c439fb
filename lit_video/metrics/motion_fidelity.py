"""Motion fidelity score (Yatim et al., "Space-Time Diffusion Features for Zero-Shot Text-Driven
Motion Transfer"), on point tracks from any ``PointTracker``.

Per track, per-frame displacements are L2-normalised; corr(τ, τ') is the mean over frames of their
cosines; the score averages each track's best match in the other video, symmetrically. Range
[−1, 1]: identical motion → 1, reversed motion → −1.

Static guard: a displacement shorter than ``static_threshold`` pixels counts as "still". Two
still displacements agree (cosine 1), a still and a moving one do not (cosine 0); this replaces
the 0/0 of normalising a zero vector.

Shape legend: F frames, N/M tracks.
"""

from __future__ import annotations

import torch

from lit_video.tracking import PointTracker, grid_queries


def track_correlations(tracks_a_FN2: torch.Tensor, tracks_b_FM2: torch.Tensor,
                       static_threshold: float = 1e-2) -> torch.Tensor:
    """corr(τ_n, τ'_m) for every pair of tracks: (N, M) in [−1, 1]."""
    if tracks_a_FN2.shape[0] != tracks_b_FM2.shape[0] or tracks_a_FN2.shape[0] < 2:
        raise ValueError(f"both track sets need the same number (≥ 2) of frames, got {tracks_a_FN2.shape[0]} "
                         f"and {tracks_b_FM2.shape[0]}")
    motion_a, motion_b = tracks_a_FN2.diff(dim=0).double(), tracks_b_FM2.diff(dim=0).double()
    norm_a, norm_b = motion_a.norm(dim=-1), motion_b.norm(dim=-1)  # (F-1, N), (F-1, M)
    moving_a, moving_b = norm_a > static_threshold, norm_b > static_threshold
    unit_a = torch.where(moving_a[..., None], motion_a / norm_a.clamp_min(1e-12)[..., None], 0.0)
    unit_b = torch.where(moving_b[..., None], motion_b / norm_b.clamp_min(1e-12)[..., None], 0.0)
    cosine = torch.einsum("fnc,fmc->fnm", unit_a, unit_b)
    both_still = (~moving_a)[:, :, None] & (~moving_b)[:, None, :]
    cosine = torch.where(both_still, 1.0, cosine)
    return cosine.mean(dim=0).float()


def motion_fidelity_score(tracks_a_FN2: torch.Tensor, tracks_b_FM2: torch.Tensor,
                          static_threshold: float = 1e-2) -> float:
    """Symmetric best-match motion fidelity of two track sets over the same frames."""
    correlation = track_correlations(tracks_a_FN2, tracks_b_FM2, static_threshold)
    return 0.5 * float(correlation.max(dim=1).values.mean() + correlation.max(dim=0).values.mean())


def video_motion_fidelity(reference_F3HW: torch.Tensor, candidate_F3HW: torch.Tensor, tracker: PointTracker,
                          grid_size: int = 10, static_threshold: float = 1e-2, margin_fraction: float = 0.1) -> float:
    """Tracks a grid of points (``margin_fraction`` away from the borders) through both videos
    (pixels in [0, 1], (F, 3, H, W)) and scores their motion."""
    queries = grid_queries(reference_F3HW.shape[-2], reference_F3HW.shape[-1], grid_size, margin_fraction)
    return motion_fidelity_score(tracker.track(reference_F3HW, queries), tracker.track(candidate_F3HW, queries),
                                 static_threshold)
