"""Point trackers for the motion fidelity score: a pluggable interface and a weight-free default.

``PatchMatchTracker`` follows each query point frame to frame by coarse-to-fine patch matching
(sum of squared differences over a search window at each pyramid level, a small penalty on
displacement so textureless patches stay put, parabolic sub-pixel refinement). It needs no
weights; for real evaluations subclass ``PointTracker`` around CoTracker loaded from a local
checkpoint and select it by ``class_path`` in the probe config.

Shape legend: F frames, N points, H/W height/width, K patch or search offsets.
"""

from __future__ import annotations

import abc

import torch
import torch.nn.functional as F


class PointTracker(abc.ABC):
    """Interface: ``track(video_F3HW in [0, 1], queries_N2 as (x, y) pixels in frame 0) → (F, N, 2)``."""

    @abc.abstractmethod
    def track(self, video_F3HW: torch.Tensor, queries_N2: torch.Tensor) -> torch.Tensor:
        """Positions (x, y) of every query point in every frame."""


def grid_queries(height: int, width: int, grid_size: int, margin_fraction: float = 0.1) -> torch.Tensor:
    """``grid_size``² query points (x, y) evenly spread inside the frame, away from the borders."""
    ys = torch.linspace(margin_fraction * (height - 1), (1 - margin_fraction) * (height - 1), grid_size)
    xs = torch.linspace(margin_fraction * (width - 1), (1 - margin_fraction) * (width - 1), grid_size)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1)


def _offsets(radius: int) -> torch.Tensor:
    steps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack([dx.flatten(), dy.flatten()], dim=-1)  # (K, 2) as (x, y)


def sample_points(image_HW: torch.Tensor, points_NK2: torch.Tensor) -> torch.Tensor:
    """Bilinear samples (N, K) of a grey image at (x, y) pixel positions, clamped to the border."""
    height, width = image_HW.shape
    grid = torch.stack([2 * points_NK2[..., 0] / max(width - 1, 1) - 1,
                        2 * points_NK2[..., 1] / max(height - 1, 1) - 1], dim=-1)
    return F.grid_sample(image_HW[None, None], grid[None], mode="bilinear", padding_mode="border",
                         align_corners=True)[0, 0]


class PatchMatchTracker(PointTracker):
    """Weight-free tracker: coarse-to-fine SSD patch matching between consecutive frames.

    Args:
        patch_radius: Half-size of the matched patch (patch side 2r+1) at each level.
        search_radius: Half-size of the integer search window at each level, in that level's pixels.
        pyramid_levels: Levels of the 2× image pyramid; motion up to about
            ``search_radius · (2^levels − 1)`` pixels per frame is found.
        displacement_penalty: Cost added per squared pixel of displacement, relative to the
            patch's contrast, when picking the best integer offset, so flat regions report no
            motion (the sub-pixel fit uses the plain cost).
    """

    def __init__(self, patch_radius: int = 3, search_radius: int = 5, pyramid_levels: int = 2,
                 displacement_penalty: float = 1e-3) -> None:
        self.patch_radius = patch_radius
        self.search_radius = search_radius
        self.pyramid_levels = pyramid_levels
        self.displacement_penalty = displacement_penalty

    @staticmethod
    def _grey(video_F3HW: torch.Tensor) -> torch.Tensor:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32)
        return torch.einsum("fchw,c->fhw", video_F3HW.float(), weights)

    def _pyramid(self, image_HW: torch.Tensor) -> list[torch.Tensor]:
        levels = [image_HW]
        for _ in range(self.pyramid_levels - 1):
            if min(levels[-1].shape) < 4 * (self.patch_radius + 1):
                break
            levels.append(F.avg_pool2d(levels[-1][None, None], 2)[0, 0])
        return levels

    def _match(self, source_HW: torch.Tensor, target_HW: torch.Tensor, points_N2: torch.Tensor,
               guess_N2: torch.Tensor) -> torch.Tensor:
        """Displacement (N, 2) of each point's patch from source to target, starting from a guess."""
        patch, search = _offsets(self.patch_radius), _offsets(self.search_radius)
        template_NP = sample_points(source_HW, points_N2[:, None] + patch[None])
        centres_NS2 = (points_N2 + guess_N2)[:, None] + search[None]
        candidates_NSP2 = centres_NS2[:, :, None] + patch[None, None]
        n, s, p, _ = candidates_NSP2.shape
        candidates_NSP = sample_points(target_HW, candidates_NSP2.reshape(n, s * p, 2)).reshape(n, s, p)
        cost_NS = (candidates_NSP - template_NP[:, None]).pow(2).mean(-1)
        contrast_N = template_NP.var(-1) + 1e-6  # flat patch → tiny penalty that still breaks ties at 0
        penalty_NS = self.displacement_penalty * contrast_N[:, None] * (guess_N2[:, None] + search[None]).pow(2).sum(-1)
        best = (cost_NS + penalty_NS).argmin(-1)
        displacement = guess_N2 + search[best]
        side = 2 * self.search_radius + 1
        row, col = best // side, best % side
        for axis, index, stride, limit in ((0, col, 1, col), (1, row, side, row)):
            inside = (limit > 0) & (limit < side - 1)
            centre = cost_NS.gather(1, best[:, None])[:, 0]
            minus = cost_NS.gather(1, (best - stride * inside.long())[:, None])[:, 0]
            plus = cost_NS.gather(1, (best + stride * inside.long())[:, None])[:, 0]
            curvature = minus - 2 * centre + plus
            shift = torch.where(inside & (curvature > 1e-12), 0.5 * (minus - plus) / curvature.clamp_min(1e-12),
                                torch.zeros_like(centre))
            displacement[:, axis] += shift.clamp(-0.5, 0.5)
        return displacement

    @torch.no_grad()
    def track(self, video_F3HW: torch.Tensor, queries_N2: torch.Tensor) -> torch.Tensor:
        grey = self._grey(video_F3HW)
        positions = [queries_N2.float()]
        for index in range(grey.shape[0] - 1):
            source, target = self._pyramid(grey[index]), self._pyramid(grey[index + 1])
            displacement = torch.zeros_like(positions[-1])
            for level in reversed(range(len(source))):
                scale = 2.0 ** level
                points = (positions[-1] + 0.5) / scale - 0.5  # pixel centres under 2× average pooling
                displacement = self._match(source[level], target[level], points, displacement / scale) * scale
            height, width = grey.shape[1:]
            moved = positions[-1] + displacement
            moved[:, 0].clamp_(0, width - 1)
            moved[:, 1].clamp_(0, height - 1)
            positions.append(moved)
        return torch.stack(positions)
