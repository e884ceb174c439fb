"""VideoSamples' val/* metrics are the CLIP and motion scores of exactly the videos it sampled."""

import statistics
from types import SimpleNamespace

import pytest

from lit_video.callbacks import VideoSamples, frames_01
from lit_video.data import ReferenceVideoDataModule
from lit_video.metrics import CLIPVideoScorer, build_tiny_clip
from lit_video.metrics.motion_fidelity import video_motion_fidelity
from lit_video.module import MotionCustomizationModule
from lit_video.tracking import LucasKanadeTracker
from lit_video.video_io import to_uint8_frames


class RecordingLogger:
    def __init__(self) -> None:
        self.records = []

    def log_metrics(self, metrics, step):
        self.records.append((step, dict(metrics)))


def test_val_metrics_are_the_scores_of_the_sampled_videos(tmp_path):
    module = MotionCustomizationModule(lora_rank=4).eval()
    data = ReferenceVideoDataModule("a red square moving", None, num_frames=4, height=32, width=32,
                                    generated_clip_dir=str(tmp_path))
    clip_folder = build_tiny_clip(str(tmp_path / "clip"))
    prompts, seeds = ["a red square", "a blue disc"], [0, 1]
    callback = VideoSamples(prompts=prompts, seeds=seeds, num_inference_steps=2, guidance_scale=2.0,
                            clip_model_path=clip_folder, track_grid_size=4, save_files=False)
    logger = RecordingLogger()
    trainer = SimpleNamespace(global_rank=0, datamodule=data, global_step=7, loggers=[logger], logger=None,
                              default_root_dir=str(tmp_path))
    metrics = callback.sample_and_log(trainer, module)

    scorer, reference = CLIPVideoScorer(clip_folder), frames_01(data.video_CFHW)
    clip_scores, motion_scores = {p: [] for p in prompts}, {p: [] for p in prompts}
    for seed in seeds:
        for prompt, video in zip(prompts, module.sample(prompts, 4, 32, 32, 2, 2.0, "", seed)):
            clip_scores[prompt].append(scorer.text_frame_score(to_uint8_frames(video), prompt))
            motion_scores[prompt].append(video_motion_fidelity(reference, frames_01(video), LucasKanadeTracker(), 4,
                                                                    match="correlation"))
    for name, scores in (("clip_score", clip_scores), ("motion_fidelity", motion_scores)):
        everything = [v for values in scores.values() for v in values]
        assert metrics[f"val/{name}"] == pytest.approx(statistics.fmean(everything), abs=1e-5)
        assert metrics[f"val/{name}_std"] == pytest.approx(statistics.pstdev(everything), abs=1e-5)
        assert metrics[f"val/{name}/a_blue_disc"] == pytest.approx(statistics.fmean(scores["a blue disc"]), abs=1e-5)
    assert logger.records == [(7, metrics)]  # logged once, at the step the samples were made
