import pytest

from lit_video.dit.flow import FlowSchedule
from lit_video.probe import in_window


@pytest.mark.parametrize("boundary", [0, 1, 250, 500, 700, 999, 1000])
def test_late_and_early_windows_split_flow_timesteps_exactly(boundary):
    timesteps = FlowSchedule.from_shift(12, 3.0).timesteps  # non-integer t = σ·1000, the first exactly 1000
    assert timesteps[0] == pytest.approx(1000.0)
    late = [t for t in timesteps if in_window(t, 0, boundary - 1, 1000)]
    early = [t for t in timesteps if in_window(t, boundary, 999, 1000)]
    assert sorted(late + early) == sorted(timesteps) and not set(late) & set(early)
    assert all(t >= boundary for t in early)
    if boundary < 1000:
        assert all(t < boundary for t in late)
    else:
        assert early == [] and late == timesteps  # b = T: the full edit and the source re-sample


def test_integer_windows_are_unchanged():
    assert [t for t in range(0, 1000, 100) if in_window(t, 0, 299, 1000)] == [0, 100, 200]
    assert [t for t in range(0, 1000, 100) if in_window(t, 300, 999, 1000)] == [300, 400, 500, 600, 700, 800, 900]
