import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lit_video.metrics import CLIPVideoScorer, build_tiny_clip, motion_fidelity_score, track_correlations
from lit_video.metrics.motion_fidelity import MotionFidelity, video_motion_fidelity, window_lags
from lit_video.tracking import LucasKanadeTracker, grid_queries
from lit_video.video_io import moving_shapes_frames


def random_tracks(frames=8, points=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    steps = torch.randn(frames - 1, points, 2, generator=generator)
    return torch.cat([torch.zeros(1, points, 2), steps.cumsum(0)]) + 20


def test_identical_tracks_score_one():
    tracks = random_tracks()
    assert motion_fidelity_score(tracks, tracks) == pytest.approx(1.0, abs=1e-6)
    # best-correlation matching is translation-invariant (the motion transferred to another place) ...
    assert motion_fidelity_score(tracks, tracks + 5.0, match="correlation") == pytest.approx(1.0, abs=1e-6)
    # ... nearest-path matching compares the same place: shifted paths meet the wrong neighbours
    assert motion_fidelity_score(tracks, tracks + 5.0) < 0.9


def test_reversed_motion_scores_minus_one():
    tracks = random_tracks(points=1)  # one track: its best match is itself
    mirrored = 2 * tracks[:1] - tracks  # every displacement negated
    assert motion_fidelity_score(tracks, mirrored) == pytest.approx(-1.0, abs=1e-6)
    constant_velocity = torch.arange(6.0)[:, None, None] * torch.tensor([[1.5, -0.5]]) + 10
    assert motion_fidelity_score(constant_velocity, constant_velocity.flip(0)) == pytest.approx(-1.0, abs=1e-6)


def float64_reference_score(a, b, lags, match):
    """The documented definition written out with loops (no radius, every step trusted)."""
    a, b = a.double(), b.double()
    frames = a.shape[0]
    disp = lambda t: [t[f + k] - t[f] for k in lags if k < frames for f in range(frames - k)]  # noqa: E731
    da, db = disp(a), disp(b)

    def corr(n, m):
        num = den = 0.0
        for u, v in zip(da, db):
            lu, lv = float(u[n].norm()), float(v[m].norm())
            w = 0.5 * (lu + lv)
            cos = float(u[n] @ v[m]) / (lu * lv) if lu > 1e-3 and lv > 1e-3 else 0.0
            num, den = num + w * cos, den + w
        return num / den if den else 0.0

    c = [[corr(n, m) for m in range(b.shape[1])] for n in range(a.shape[1])]
    wa = [sum(float(u[n].norm()) for u in da) for n in range(a.shape[1])]
    wb = [sum(float(v[m].norm()) for v in db) for m in range(b.shape[1])]
    if match == "correlation":
        ab = sum(w * max(row) for w, row in zip(wa, c)) / sum(wa)
        ba = sum(w * max(c[n][m] for n in range(len(c))) for m, w in enumerate(wb)) / sum(wb)
        return 0.5 * (ab + ba)

    def path_distance(n, m):
        return sum(float((a[f, n] - b[f, m]).norm()) for f in range(frames)) / frames

    nearest_b = [min(range(b.shape[1]), key=lambda m: path_distance(n, m)) for n in range(a.shape[1])]
    nearest_a = [min(range(a.shape[1]), key=lambda n: path_distance(n, m)) for m in range(b.shape[1])]
    ab = sum(w * c[n][nearest_b[n]] for n, w in enumerate(wa)) / sum(wa)
    ba = sum(w * c[nearest_a[m]][m] for m, w in enumerate(wb)) / sum(wb)
    return 0.5 * (ab + ba)


@pytest.mark.parametrize("match", ["trajectory", "correlation"])
def test_score_matches_a_float64_loop_reference(match):
    a, b = random_tracks(10, 5, seed=1), random_tracks(10, 4, seed=2)
    b[:, 0] = b[0, 0]  # one still track
    expected = float64_reference_score(a, b, lags=(5, 9), match=match)  # the default lags of 10 frames
    assert motion_fidelity_score(a, b, match=match) == pytest.approx(expected, abs=1e-5)
    assert motion_fidelity_score(a, b, lags=(1, 2, 4, 8), match=match) == pytest.approx(
        float64_reference_score(a, b, lags=(1, 2, 4, 8), match=match), abs=1e-5)


def test_window_lags_are_half_and_whole_window():
    assert window_lags(16) == (8, 15) and window_lags(8) == (4, 7) and window_lags(3) == (1, 2)
    assert window_lags(2) == (1,)


def test_still_tracks_are_neither_reward_nor_free_pass():
    static = torch.full((6, 4, 2), 7.0)
    moving = random_tracks(6, 4)
    assert motion_fidelity_score(static, static) == 1.0  # two clips without motion: documented as equal
    assert motion_fidelity_score(static, moving) == 0.0 and motion_fidelity_score(moving, static) == 0.0
    # half the tracks still in both: the score is that of the moving half alone (still pairs carry no weight)
    half_still = torch.cat([moving[:, :2], static[:, :2]], dim=1)
    other = torch.cat([moving[:, :2] + 0.3 * random_tracks(6, 2, seed=5), static[:, :2]], dim=1)
    assert motion_fidelity_score(half_still, other) == pytest.approx(
        motion_fidelity_score(moving[:, :2], moving[:, :2] + 0.3 * random_tracks(6, 2, seed=5)), abs=1e-6)
    correlations = track_correlations(moving, half_still)
    assert torch.isfinite(correlations).all()


def test_sub_threshold_jitter_counts_as_still_and_scores_stay_in_range():
    moving = random_tracks(8, 6, seed=3)
    jitter = torch.full((8, 6, 2), 5.0) + 1e-4 * random_tracks(8, 6, seed=4)  # far below still_threshold
    assert motion_fidelity_score(moving, jitter) == 0.0 and motion_fidelity_score(jitter, jitter) == 1.0
    mixed = torch.cat([moving[:, :3], jitter[:, :3]], dim=1)
    for a, b in [(moving, mixed), (mixed, moving), (mixed, jitter)]:
        assert -1.0 <= motion_fidelity_score(a, b) <= 1.0
        assert (track_correlations(a, b).abs() <= 1 + 1e-6).all()


def test_untrusted_steps_carry_no_weight():
    a = random_tracks(6, 3)
    b = a.clone()
    b[3:] += torch.tensor([40.0, -40.0])  # a tracker jump between frames 2 and 3 ...
    valid = torch.ones(5, 3, dtype=torch.bool)
    valid[2] = False  # ... that the tracker flagged
    assert motion_fidelity_score(a, b, valid, valid) == pytest.approx(1.0, abs=1e-6)
    assert motion_fidelity_score(a, b) < 0.9


def test_match_radius_limits_best_matches_to_nearby_tracks():
    starts = torch.tensor([[0.0, 0.0], [100.0, 0.0]])
    a = torch.stack([starts + f * torch.tensor([[1.0, 0.0], [0.0, 1.0]]) for f in range(5)])  # right; down
    b = torch.stack([starts + f * torch.tensor([[0.0, 1.0], [1.0, 0.0]]) for f in range(5)])  # same motions, swapped
    assert motion_fidelity_score(a, b, match="correlation") == pytest.approx(1.0)
    assert motion_fidelity_score(a, b, match="correlation", match_radius=10.0) == pytest.approx(0.0)
    assert motion_fidelity_score(a, b) == pytest.approx(0.0)  # nearest path: the same place, other motion


def test_lucas_kanade_follows_a_translation():
    texture = F.avg_pool2d(torch.rand(1, 3, 90, 90, generator=torch.Generator().manual_seed(0)), 3, 1, 1)[0]
    video = torch.stack([texture[:, 20 + 2 * i:84 + 2 * i, 20 - 3 * i:84 - 3 * i] for i in range(4)])  # (+3, −2)/frame
    queries = grid_queries(64, 64, 5, margin_fraction=0.3)
    tracks = LucasKanadeTracker().track(video, queries)
    error = (tracks.diff(dim=0) - torch.tensor([3.0, -2.0])).abs()
    assert error.median() < 0.05 and error.max() < 0.5, error
    score = lambda a, b: video_motion_fidelity(a, b, LucasKanadeTracker(), grid_size=5, margin_fraction=0.3)  # noqa
    assert score(video, video) == pytest.approx(1.0)
    assert score(video, video.flip(0)) < -0.9  # played backwards


def test_motion_fidelity_tracks_the_reference_once_and_scores_like_the_one_shot_function():
    texture = F.avg_pool2d(torch.rand(1, 3, 90, 90, generator=torch.Generator().manual_seed(1)), 3, 1, 1)[0]
    video = torch.stack([texture[:, 20 + 2 * i:84 + 2 * i, 20 - 3 * i:84 - 3 * i] for i in range(4)])
    candidates = [video, video.flip(0), video[:1].expand(4, -1, -1, -1)]
    calls = []

    class CountingTracker(LucasKanadeTracker):
        def track_with_validity(self, video_F3HW, queries_N2):
            calls.append(video_F3HW)
            return super().track_with_validity(video_F3HW, queries_N2)

    score = MotionFidelity(video, CountingTracker(), grid_size=5, margin_fraction=0.3)
    scores = [score(candidate) for candidate in candidates]
    assert len(calls) == 1 + len(candidates)  # the reference once, each candidate once
    expected = [video_motion_fidelity(video, c, LucasKanadeTracker(), grid_size=5, margin_fraction=0.3)
                for c in candidates]
    assert scores == expected


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
