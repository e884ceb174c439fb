import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lit_video.metrics import CLIPVideoScorer, build_tiny_clip, motion_fidelity_score, track_correlations
from lit_video.metrics.motion_fidelity import video_motion_fidelity
from lit_video.tracking import PatchMatchTracker, grid_queries
from lit_video.video_io import moving_shapes_frames


def random_tracks(frames=8, points=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    steps = torch.randn(frames - 1, points, 2, generator=generator)
    return torch.cat([torch.zeros(1, points, 2), steps.cumsum(0)]) + 20


def test_identical_tracks_score_one():
    tracks = random_tracks()
    assert motion_fidelity_score(tracks, tracks) == pytest.approx(1.0, abs=1e-6)
    assert motion_fidelity_score(tracks, tracks + 5.0) == pytest.approx(1.0, abs=1e-6)  # translation-invariant


def test_reversed_motion_scores_minus_one():
    tracks = random_tracks(points=1)  # one track: its best match is itself
    mirrored = 2 * tracks[:1] - tracks  # every displacement negated
    assert motion_fidelity_score(tracks, mirrored) == pytest.approx(-1.0, abs=1e-6)
    constant_velocity = torch.arange(6.0)[:, None, None] * torch.tensor([[1.5, -0.5]]) + 10
    assert motion_fidelity_score(constant_velocity, constant_velocity.flip(0)) == pytest.approx(-1.0, abs=1e-6)


def test_static_tracks_are_guarded():
    static = torch.full((6, 4, 2), 7.0)
    moving = random_tracks(6, 4)
    assert motion_fidelity_score(static, static) == 1.0  # two still videos agree, no 0/0
    score = motion_fidelity_score(static, moving)
    assert np.isfinite(score) and score == pytest.approx(0.0)
    correlations = track_correlations(moving, torch.cat([moving[:, :2], static[:, :2]], dim=1))
    assert torch.isfinite(correlations).all()


def test_patch_match_tracker_follows_a_translation():
    texture = F.avg_pool2d(torch.rand(1, 3, 90, 90, generator=torch.Generator().manual_seed(0)), 3, 1, 1)[0]
    video = torch.stack([texture[:, 20 + 2 * i:84 + 2 * i, 20 - 3 * i:84 - 3 * i] for i in range(4)])  # (+3, −2)/frame
    queries = grid_queries(64, 64, 5, margin_fraction=0.3)
    tracks = PatchMatchTracker().track(video, queries)
    displacement = tracks.diff(dim=0)
    error = (displacement - torch.tensor([3.0, -2.0])).abs()
    assert error.median() < 0.05 and error.max() < 0.5, error  # integer motion, sub-pixel accurate
    score = lambda a, b: video_motion_fidelity(a, b, PatchMatchTracker(), grid_size=5, margin_fraction=0.3)  # noqa
    assert score(video, video) == pytest.approx(1.0)
    assert score(video, video.flip(0)) < -0.9  # played backwards


def test_patch_match_tracker_keeps_flat_regions_still():
    video = torch.full((3, 3, 32, 32), 0.5)
    tracks = PatchMatchTracker().track(video, grid_queries(32, 32, 3))
    assert torch.equal(tracks[0], tracks[-1])


@pytest.fixture(scope="module")
def clip_scorer(tmp_path_factory):
    return CLIPVideoScorer(build_tiny_clip(str(tmp_path_factory.mktemp("clip"))))


def test_clip_text_frame_score_matches_clip_model_forward(clip_scorer):
    frames = moving_shapes_frames(3, 40, 56)
    prompt = "a red square"
    model = clip_scorer.model
    tokens = clip_scorer.tokenizer([prompt], padding="max_length", max_length=32, return_tensors="pt")
    with torch.no_grad():
        output = model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask,
                       pixel_values=clip_scorer.preprocess(frames))
    cosine = output.logits_per_image[:, 0] / model.logit_scale.exp()
    expected = float((100 * cosine).clamp_min(0).mean())
    assert clip_scorer.text_frame_score(frames, prompt) == pytest.approx(expected, abs=1e-4)
    assert clip_scorer.preprocess(frames).shape == (3, 3, 32, 32)


def test_temporal_consistency(clip_scorer):
    frame = moving_shapes_frames(1, 32, 32)
    assert clip_scorer.temporal_consistency(np.repeat(frame, 4, axis=0)) == pytest.approx(1.0, abs=1e-5)
    noise = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    assert clip_scorer.temporal_consistency(noise) < 1.0 - 1e-4
