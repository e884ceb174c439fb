"""Point trackers: exact on still frames (real clip), sub-pixel on translations, checks, learned-tracker loading."""

import pytest
import torch
import torch.nn.functional as F

from lit_video.cotracker import CoTrackerTracker, ScriptedTracker
from lit_video.errors import VideoInputError
from lit_video.metrics.motion_fidelity import video_motion_fidelity
from lit_video.tracking import LucasKanadeTracker, grid_queries
from tests.lit_video.helpers import real_clip_frames


@pytest.mark.parametrize("levels", [1, 3])
def test_still_real_frames_report_exactly_no_motion(levels):
    frame = real_clip_frames(0, 1)  # (1, 3, 144, 176)
    video = frame.expand(8, -1, -1, -1)
    queries = grid_queries(144, 176, 10)
    tracks, valid = LucasKanadeTracker(pyramid_levels=levels).track_with_validity(video, queries)
    assert torch.equal(tracks, queries.expand(8, -1, -1))  # every point, every frame, bit for bit
    assert valid.float().mean() > 0.5  # textured points are trusted (and still), not just discarded


def test_translation_of_a_real_frame_is_followed_to_a_twentieth_of_a_pixel():
    frame = real_clip_frames(40, 41)[0]  # (3, 144, 176)
    # (+3, −2)/frame
    shifted = torch.stack([frame[:, 20 + 2 * i:116 + 2 * i, 30 - 3 * i:126 - 3 * i] for i in range(5)])
    queries = grid_queries(96, 96, 6, margin_fraction=0.2)
    tracks, valid = LucasKanadeTracker().track_with_validity(shifted, queries)
    error = (tracks.diff(dim=0) - torch.tensor([3.0, -2.0])).norm(dim=-1)[valid]
    assert valid.float().mean() > 0.9 and error.quantile(0.95) < 0.05 and error.max() < 0.25, error


def test_sub_pixel_translation_of_smooth_texture():
    texture = F.avg_pool2d(torch.rand(1, 3, 120, 120, generator=torch.Generator().manual_seed(0)), 5, 1, 2)
    # (+0.5, +0.25) px per frame by bilinear resampling of the texture
    theta = lambda i: torch.tensor([[[1.0, 0, -0.5 * i * 2 / 119], [0, 1.0, -0.25 * i * 2 / 119]]])  # noqa: E731
    video = torch.cat([F.grid_sample(texture, F.affine_grid(theta(i), (1, 3, 120, 120), align_corners=True),
                                     align_corners=True) for i in range(4)])[:, :, 20:100, 20:100]
    tracks, valid = LucasKanadeTracker().track_with_validity(video, grid_queries(80, 80, 5, margin_fraction=0.25))
    error = (tracks.diff(dim=0) - torch.tensor([0.5, 0.25])).norm(dim=-1)[valid]
    assert valid.all() and error.max() < 0.05, error


def test_flat_windows_are_untrusted_and_still():
    video = torch.full((3, 3, 48, 48), 0.5)
    tracks, valid = LucasKanadeTracker().track_with_validity(video, grid_queries(48, 48, 3))
    assert not valid.any() and torch.equal(tracks[0], tracks[-1])


def test_forward_backward_check_rejects_a_point_that_vanishes():
    frame = real_clip_frames(0, 1)[0]
    second = frame.clone()
    second[:, 40:100, 50:120] = torch.rand(3, 60, 70, generator=torch.Generator().manual_seed(1))  # occluder
    queries = torch.tensor([[85.0, 70.0], [20.0, 120.0]])  # inside the occluded block / elsewhere (x, y)
    _, valid = LucasKanadeTracker().track_with_validity(torch.stack([frame, second]), queries)
    assert valid.tolist() == [[False, True]]


class ConstantVelocity(torch.nn.Module):
    """A scripted 'tracker' with CoTracker's call convention: every point moves (+1, 0) px per frame,
    and is invisible in frame 2."""

    def forward(self, video: torch.Tensor, queries: torch.Tensor):
        frames = video.shape[1]
        steps = torch.arange(frames, dtype=torch.float32).view(1, frames, 1, 1)
        tracks = queries[:, None, :, 1:] + steps * torch.tensor([1.0, 0.0])
        visibility = torch.ones(video.shape[0], frames, queries.shape[1], dtype=torch.bool)
        visibility[:, 2] = False
        return tracks, visibility


def test_scripted_tracker_loads_from_a_local_file(tmp_path):
    path = tmp_path / "tracker.pt"
    torch.jit.save(torch.jit.script(ConstantVelocity()), str(path))
    tracker = ScriptedTracker(str(path))
    video = torch.rand(5, 3, 16, 16)
    tracks, valid = tracker.track_with_validity(video, torch.tensor([[3.0, 4.0]]))
    assert torch.equal(tracks[:, 0], torch.tensor([[3.0 + f, 4.0] for f in range(5)]))
    assert valid[:, 0].tolist() == [True, False, False, True]  # steps into and out of the invisible frame
    assert video_motion_fidelity(video, video, tracker, grid_size=3) == pytest.approx(1.0)


def test_learned_trackers_fail_with_one_clear_line(tmp_path):
    with pytest.raises(VideoInputError, match="does not exist"):
        ScriptedTracker(str(tmp_path / "missing.pt"))
    with pytest.raises(VideoInputError, match="does not exist"):
        CoTrackerTracker(str(tmp_path / "missing.pth"))
    checkpoint = tmp_path / "scaled_offline.pth"
    checkpoint.write_bytes(b"")
    try:
        import cotracker  # noqa: F401
    except ImportError:
        with pytest.raises(VideoInputError, match="cotracker package"):
            CoTrackerTracker(str(checkpoint))
