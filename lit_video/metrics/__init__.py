"""Video metrics: CLIP text–frame score, temporal consistency, motion fidelity on point tracks."""

from lit_video.metrics.clip_score import CLIPVideoScorer, build_tiny_clip
from lit_video.metrics.motion_fidelity import (
    MotionFidelity,
    motion_fidelity_score,
    track_correlations,
    video_motion_fidelity,
)

__all__ = ["CLIPVideoScorer", "MotionFidelity", "build_tiny_clip", "motion_fidelity_score", "track_correlations",
           "video_motion_fidelity"]
