import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cli import main
from lit_video.ddim import DDIMSchedule, ddim_sample
from lit_video.probe import estimate_motion_boundary, resample_with_window
from lit_video.sampling import guided_denoiser
from tests.lit_video.helpers import REAL_CLIP, REPO_ROOT, small_latents


@pytest.fixture
def prompts(tiny_components):
    return tiny_components.encode_prompts(["a red square moving", "a green star moving", ""]).split(1)


def test_empty_window_is_source_resample_and_full_window_is_new_prompt_sample(tiny_components, prompts):
    source, edit, empty = prompts
    schedule = DDIMSchedule.from_scheduler(tiny_components.scheduler, 4)
    inverted = small_latents(seed=3)
    plain = lambda text: ddim_sample(guided_denoiser(tiny_components, lambda t: text, empty, 4.0), inverted, schedule)  # noqa
    resample = lambda window: resample_with_window(tiny_components, inverted, schedule, source, edit, empty, window, 4.0)  # noqa
    source_sample, edit_sample = plain(source), plain(edit)
    assert not torch.equal(source_sample, edit_sample)
    assert torch.equal(resample((0, -1)), source_sample)  # empty window
    assert torch.equal(resample((1000, 999)), source_sample)
    assert torch.equal(resample((0, 999)), edit_sample)  # full window
    partial = resample((600, 999))
    assert not torch.equal(partial, source_sample) and not torch.equal(partial, edit_sample)


def test_window_injects_the_new_prompt_exactly_inside_the_window(tiny_components, prompts):
    source, edit, empty = prompts
    schedule = DDIMSchedule.from_scheduler(tiny_components.scheduler, 10)
    seen = []
    hook = tiny_components.unet.register_forward_pre_hook(
        lambda unet, args, kwargs: seen.append((int(args[1][0]), torch.equal(kwargs["encoder_hidden_states"], edit))),
        with_kwargs=True)
    latents = small_latents(frames=2, size=8)
    resample_with_window(tiny_components, latents, schedule, source, edit, empty, (300, 700), 1.0)
    hook.remove()
    assert seen == [(t, 300 <= t <= 700) for t in schedule.timesteps]


def test_boundary_estimate_interpolates_the_motion_drop():
    boundaries = [0, 200, 400, 600, 800, 1000]
    motion = [0.9, 0.9, 0.88, 0.8, 0.4, 0.3]  # source 0.9, full edit 0.3: half-drop at 0.6
    assert estimate_motion_boundary(boundaries, motion, 0.9, 0.3, 0.5) == pytest.approx(600 + 0.2 / 0.4 * 200)
    assert estimate_motion_boundary(boundaries, [0.5] * 6, 0.5, 0.5) is None  # no motion change: undefined
    assert estimate_motion_boundary(boundaries, motion[::-1], 0.3, 0.9) is None  # the edit kept more motion
    assert estimate_motion_boundary(boundaries, [0.9, 0.2, 0.2, 0.2, 0.2, 0.3], 0.9, 0.3) == pytest.approx(
        200 * (0.9 - 0.6) / (0.9 - 0.2))  # linear interpolation of M between grid points at M = 0.6
    assert estimate_motion_boundary(boundaries, [0.9, 0.9, 0.9, 0.9, 0.9, 0.85], 0.9, 0.3) is None


def real_clip_args() -> list[str]:
    """The real carphone clip (every 4th frame) when ../shared is laid out, else the generated demo clip."""
    if not REAL_CLIP.is_file():
        return []
    return ["--data.init_args.video_path", str(REAL_CLIP), "--data.init_args.frame_stride", "4",
            "--data.init_args.prompt", "a man talking on a phone in a moving car"]


def test_probe_runs_through_cli_predict_and_logs(tmp_path):
    main(["predict", "--config", str(REPO_ROOT / "configs/video/probe_tiny.yaml"),
          "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path),
          "--trainer.enable_progress_bar", "false",
          "--model.init_args.num_inference_steps", "4", "--model.init_args.boundaries", "[0, 500, 1000]",
          "--model.init_args.track_grid_size", "4", "--model.init_args.clip_model_path", "null",
          "--model.init_args.seeds", "[0, 1]", "--model.init_args.noise_prior", "0.9",
          "--data.init_args.num_frames", "4", "--data.init_args.height", "32", "--data.init_args.width", "32",
          "--data.init_args.generated_clip_dir", str(tmp_path / "clip"), *real_clip_args()])
    [run] = list(tmp_path.glob("probe/version_*"))
    summary = json.loads((run / "probe" / "probe.json").read_text())
    rows = summary["results"]
    assert [(r["kind"], r["boundary"]) for r in rows] == [("late", 0), ("late", 500), ("late", 1000),
                                                          ("early", 0), ("early", 500), ("early", 1000)]
    assert rows[0]["edited_steps"] == 0 and rows[2]["edited_steps"] == 4
    assert rows[0]["motion"] == rows[5]["motion"] and rows[2]["appearance"] == rows[3]["appearance"]
    assert all(r["num_seeds"] == 2 and r["motion_std"] >= 0 for r in rows) and summary["seeds"] == [0, 1]
    assert any(r["motion_std"] > 0 or r["appearance_std"] > 0 for r in rows)  # the seeds differ
    assert (run / "probe" / "probe.csv").read_text().startswith("kind,boundary,window_start")
    assert (run / "probe" / "probe.png").read_bytes()[:4] == b"\x89PNG"
    events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0, "tensors": 0}).Reload()
    assert {"probe/late/motion", "probe/late/appearance", "probe/early/motion"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("probe/late/motion")] == [0, 500, 1000]
    images = set(events.Tags()["images"])
    assert {"probe/curves", "probe/reference", "probe/videos/late_b0500"} <= images
    assert events.Images("probe/curves")[0].encoded_image_string[:4] == b"\x89PNG"
    assert any(tag.startswith("probe/table") for tag in events.Tags()["tensors"])


def test_probe_plot_marks_undefined_boundary_uses_score_ranges_and_keeps_legend_off_the_data():
    from lit_video.probe import WindowResult, markdown_table, probe_figure

    rows = [WindowResult(kind, b, 0, 0, 1, 20.0 + b / 100, 0.5, 1.0, 0.1, 3) for kind in ("late", "early")
            for b in (0, 500, 1000)]
    figure = probe_figure(rows, None, 1000)
    motion_axis, appearance_axis = figure.axes
    assert any("t* undefined" in text.get_text() for text in motion_axis.texts)
    assert motion_axis.get_ylim() == (-1.05, 1.05) and appearance_axis.get_ylim() == (0, 100)
    figure.canvas.draw()
    [legend] = figure.legends
    assert not legend.get_window_extent().overlaps(motion_axis.get_window_extent())
    table = markdown_table(rows, {"motion_boundary": None, "num_train_timesteps": 1000, "edit_prompt": "x"})
    assert "undefined" in table and "0.500 ± 0.100" in table and "3 seed(s)" in table
    assert appearance_axis.get_ylabel() == "CLIP score, new prompt"
    from lit_video.toy.colour import ColourScorer  # noqa: PLC0415 (as the import above)
    toy_label = f"{ColourScorer.score_label}, new prompt"  # what ToyProbe passes: its scorer is not CLIP
    toy_axis = probe_figure(rows, None, 1000, toy_label).axes[1]
    assert toy_axis.get_ylabel() == "% of the shape in the prompt's colour, new prompt"
    defined = probe_figure(rows, 640.0, 1000).axes[0]
    assert not defined.texts and any(line.get_xdata()[0] == 640.0 for line in defined.lines)
