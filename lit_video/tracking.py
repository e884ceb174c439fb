"""Point trackers for the motion fidelity score: a pluggable interface and a weight-free default.

``LucasKanadeTracker`` (the default) follows each query point frame to frame with pyramidal
Lucas–Kanade (Bouguet's formulation): on every level of a Gaussian pyramid, Gauss–Newton steps
minimise the squared difference between a window around the point in frame f and the shifted
window in frame f+1. Two frames that are equal give a residual of exactly zero, so the update is
exactly zero on every level: still frames report no motion, bit for bit. A step is kept only if
the window has texture (the smaller eigenvalue of the structure tensor, per pixel, above
``min_eigenvalue``) and the forward–backward check passes (tracking f+1 → f from the found
position lands within ``forward_backward_threshold`` pixels of the start); otherwise the point
holds its position and the step is marked invalid, and the motion fidelity score ignores it.

Learned trackers plug in through ``PointTracker`` (``class_path`` in the probe config); see
``lit_video.cotracker.CoTrackerTracker`` for CoTracker from a local checkpoint.

Shape legend: F frames, N points, H/W height/width, K window offsets, L pyramid levels.
"""

from __future__ import annotations

import abc

import torch
import torch.nn.functional as F

from lit_video.errors import VideoInputError


class PointTracker(abc.ABC):
    """Interface: ``track(video_F3HW in [0, 1], queries_N2 as (x, y) pixels in frame 0) → (F, N, 2)``."""

    @abc.abstractmethod
    def track(self, video_F3HW: torch.Tensor, queries_N2: torch.Tensor) -> torch.Tensor:
        """Positions (x, y) of every query point in every frame."""

    def track_with_validity(self, video_F3HW: torch.Tensor,
                            queries_N2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions (F, N, 2) and whether each frame-to-frame step (F−1, N) is trusted.

        The default trusts every step; trackers that can tell (occlusion, forward–backward
        failure, no texture) override this.
        """
        tracks_FN2 = self.track(video_F3HW, queries_N2)
        return tracks_FN2, torch.ones(tracks_FN2.shape[0] - 1, tracks_FN2.shape[1], dtype=torch.bool)


def grid_queries(height: int, width: int, grid_size: int, margin_fraction: float = 0.1) -> torch.Tensor:
    """``grid_size``² query points (x, y) evenly spread inside the frame, away from the borders."""
    ys = torch.linspace(margin_fraction * (height - 1), (1 - margin_fraction) * (height - 1), grid_size)
    xs = torch.linspace(margin_fraction * (width - 1), (1 - margin_fraction) * (width - 1), grid_size)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1)


def window_offsets(radius: int) -> torch.Tensor:
    """(K, 2) integer offsets (x, y) of a (2r+1)² window."""
    steps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack([dx.flatten(), dy.flatten()], dim=-1)


def sample_points(image_HW: torch.Tensor, points_NK2: torch.Tensor) -> torch.Tensor:
    """Bilinear samples (N, K) of a grey image at (x, y) pixel positions, clamped to the border."""
    height, width = image_HW.shape
    grid = torch.stack([2 * points_NK2[..., 0] / max(width - 1, 1) - 1,
                        2 * points_NK2[..., 1] / max(height - 1, 1) - 1], dim=-1)
    return F.grid_sample(image_HW[None, None], grid[None].to(image_HW.dtype), mode="bilinear",
                         padding_mode="border", align_corners=True)[0, 0]


def grey_frames(video_F3HW: torch.Tensor) -> torch.Tensor:
    """Luma (F, H, W) in float32 from RGB in [0, 1]."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32)
    return torch.einsum("fchw,c->fhw", video_F3HW.float(), weights)


def _gaussian_blur(images_FHW: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return images_FHW
    radius = max(1, int(round(2.5 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=images_FHW.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = images_FHW[:, None]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return x[:, 0]


def _gradients(images_FHW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central-difference image gradients (x, y), one-sided at the borders."""
    padded = F.pad(images_FHW[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    grad_x = 0.5 * (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2])
    grad_y = 0.5 * (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1])
    return grad_x, grad_y


class LucasKanadeTracker(PointTracker):
    """Weight-free tracker: pyramidal Lucas–Kanade with texture and forward–backward checks.

    Args:
        window_radius: Half-size of the matched window (side 2r+1), in each level's pixels.
        pyramid_levels: Levels of the 2× Gaussian pyramid (motion up to about
            ``window_radius · 2^(levels−1)`` pixels per frame is followed); a level is built only
            while its shorter side is at least 4 window radii.
        iterations: Gauss–Newton steps per level.
        smoothing_sigma: Gaussian blur (pixels) applied to every frame before tracking; damps
            sensor/compression noise.
        min_eigenvalue: A step is trusted only if the structure tensor's smaller eigenvalue per
            window pixel exceeds this, in units of the clip's grey-level variance (frames are divided
            by their grey std before tracking, so a global brightness or contrast change leaves the
            tracks, and which steps are trusted, unchanged); flat windows carry no motion signal.
        forward_backward_threshold: A step is trusted only if tracking it back from the found
            position returns within this many pixels of the start.
    """

    def __init__(self, window_radius: int = 7, pyramid_levels: int = 3, iterations: int = 10,
                 smoothing_sigma: float = 1.0, min_eigenvalue: float = 2.5e-4,
                 forward_backward_threshold: float = 0.5) -> None:
        if window_radius < 1 or pyramid_levels < 1 or iterations < 1:

            raise VideoInputError(f"LucasKanadeTracker needs window_radius, pyramid_levels and iterations ≥ 1, got "
                                  f"{window_radius}, {pyramid_levels}, {iterations}")
        self.window_radius = window_radius
        self.pyramid_levels = pyramid_levels
        self.iterations = iterations
        self.smoothing_sigma = smoothing_sigma
        self.min_eigenvalue = min_eigenvalue
        self.forward_backward_threshold = forward_backward_threshold

    def _pyramid(self, grey_FHW: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per level: (images, grad_x, grad_y), each (F, H_l, W_l); level 0 is full resolution."""
        images = _gaussian_blur(grey_FHW, self.smoothing_sigma)
        levels = []
        for level in range(self.pyramid_levels):
            if level > 0:
                if min(images.shape[-2:]) // 2 < 4 * self.window_radius:  # the window must fit well inside
                    break
                images = F.avg_pool2d(_gaussian_blur(images, 1.0)[:, None], 2)[:, 0]
            levels.append((images, *_gradients(images)))
        return levels

    def _step(self, levels, source: int, target: int, points_N2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Displacement (N, 2) of each point from frame ``source`` to ``target`` and its texture flag (N,)."""
        offsets_K2 = window_offsets(self.window_radius)
        displacement_N2 = torch.zeros_like(points_N2)
        textured_N = torch.ones(points_N2.shape[0], dtype=torch.bool)
        for level in reversed(range(len(levels))):
            images, grad_x, grad_y = levels[level]
            scale = 2.0 ** level
            if level < len(levels) - 1:
                displacement_N2 = displacement_N2 * 2
            points = (points_N2 + 0.5) / scale - 0.5  # pixel centres under 2× average pooling
            window_NK2 = points[:, None] + offsets_K2[None]
            template_NK = sample_points(images[source], window_NK2)
            gx_NK, gy_NK = sample_points(grad_x[source], window_NK2), sample_points(grad_y[source], window_NK2)
            gxx, gxy, gyy = (gx_NK * gx_NK).sum(-1), (gx_NK * gy_NK).sum(-1), (gy_NK * gy_NK).sum(-1)
            determinant = gxx * gyy - gxy * gxy
            trace_half = 0.5 * (gxx + gyy)
            min_eigenvalue = trace_half - torch.sqrt((trace_half ** 2 - determinant).clamp_min(0))
            if level == 0:
                textured_N = min_eigenvalue / offsets_K2.shape[0] > self.min_eigenvalue
            safe = determinant.abs() > 1e-20
            for _ in range(self.iterations):
                residual_NK = sample_points(images[target], window_NK2 + displacement_N2[:, None]) - template_NK
                bx, by = (residual_NK * gx_NK).sum(-1), (residual_NK * gy_NK).sum(-1)
                step_x = torch.where(safe, -(gyy * bx - gxy * by) / determinant.where(safe, 1.0), 0.0)
                step_y = torch.where(safe, -(gxx * by - gxy * bx) / determinant.where(safe, 1.0), 0.0)
                displacement_N2 = displacement_N2 + torch.stack([step_x, step_y], dim=-1)
        return displacement_N2, textured_N

    @torch.no_grad()
    def track_with_validity(self, video_F3HW: torch.Tensor,
                            queries_N2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grey_FHW = grey_frames(video_F3HW)
        contrast = grey_FHW.std()
        if contrast > 0:  # gain-invariant: LK's solution is, but the texture threshold is not
            grey_FHW = grey_FHW / contrast
        height, width = grey_FHW.shape[1:]
        levels = self._pyramid(grey_FHW)
        positions = [queries_N2.float()]
        valid = []
        for frame in range(grey_FHW.shape[0] - 1):
            start_N2 = positions[-1]
            forward_N2, textured_N = self._step(levels, frame, frame + 1, start_N2)
            found_N2 = start_N2 + forward_N2
            backward_N2, _ = self._step(levels, frame + 1, frame, found_N2)
            round_trip_N = (forward_N2 + backward_N2).norm(dim=-1)
            inside_N = ((found_N2[:, 0] >= 0) & (found_N2[:, 0] <= width - 1)
                        & (found_N2[:, 1] >= 0) & (found_N2[:, 1] <= height - 1))
            ok_N = (textured_N & inside_N & (round_trip_N <= self.forward_backward_threshold)
                    & forward_N2.isfinite().all(-1))
            positions.append(torch.where(ok_N[:, None], found_N2, start_N2))
            valid.append(ok_N)
        return torch.stack(positions).float(), torch.stack(valid)

    def track(self, video_F3HW: torch.Tensor, queries_N2: torch.Tensor) -> torch.Tensor:
        return self.track_with_validity(video_F3HW, queries_N2)[0]
