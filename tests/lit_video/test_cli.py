import io

import pytest
import torch
from lightning.pytorch import Trainer
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cli import main
from lit_video.callbacks import ExportLoRA
from lit_video.data import ReferenceVideoDataModule
from lit_video.module import MotionCustomizationModule
from tests.lit_video.helpers import REAL_CLIP, REPO_ROOT

TINY = str(REPO_ROOT / "configs/video/tiny.yaml")


def fit(tmp_path, *extra):
    main(["fit", "--config", TINY, "--trainer.default_root_dir", str(tmp_path),
          "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
          "--trainer.log_every_n_steps", "1", "--model.init_args.lora_rank", "4",
          "--trainer.callbacks.init_args.num_inference_steps", "3", "--data.init_args.num_frames", "4",
          "--data.init_args.height", "32", "--data.init_args.width", "32",
          "--data.init_args.generated_clip_dir", str(tmp_path / "clip"), *extra])


def test_cli_fit_writes_gif_summaries_scalars_lora_and_lean_checkpoint(tmp_path):
    fit(tmp_path, "--trainer.max_steps", "3", "--trainer.callbacks.init_args.every_n_steps", "2")
    [run] = list(tmp_path.glob("tiny/version_*"))
    events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0}).Reload()
    assert {"train/loss", "train/lr", "train/timestep"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("train/loss")) == 3
    assert all(600 <= e.value <= 999 for e in events.Scalars("train/timestep"))  # the motion window
    assert [e.value for e in events.Scalars("train/lr")] == pytest.approx([1e-3] * 3)  # tiny.yaml, no warmup
    assert {"samples/reference", "samples/a_red_square_moving_right"} <= set(events.Tags()["images"])
    samples = events.Images("samples/a_red_square_moving_right")
    assert [s.step for s in samples] == [2, 3]  # every 2 steps, and at the end
    gif = Image.open(io.BytesIO(samples[-1].encoded_image_string))
    assert gif.format == "GIF" and gif.n_frames == 4 and gif.size == (32, 32)
    assert (run / "samples" / "step_000003" / "a_red_square_moving_right.mp4").is_file()
    fidelity = events.Scalars("val/motion_fidelity")  # the VideoSamples callback, at each sampling step
    assert [e.step for e in fidelity] == [2, 3] and all(-1 <= e.value <= 1 for e in fidelity)
    assert [e.step for e in events.Scalars("val/motion_fidelity/a_red_square_moving_right")] == [2, 3]
    reference = Image.open(io.BytesIO(events.Images("samples/reference")[0].encoded_image_string))
    assert abs(reference.info["duration"] - 125) <= 10  # the demo clip's 8 fps ÷ stride 1 (GIF: 10 ms units)
    assert (run / "lora" / "pytorch_lora_weights.safetensors").is_file()
    [checkpoint_path] = list(run.glob("checkpoints/*.ckpt"))
    checkpoint = torch.load(checkpoint_path, weights_only=False)
    keys = list(checkpoint["state_dict"])
    assert keys and all(".lora_A." in k or ".lora_B." in k for k in keys)  # LoRA only, no frozen base

    # resume: the frozen base is rebuilt from its seed, LoRA and optimizer come from the checkpoint
    resumed_dir = tmp_path / "resumed"
    fit(resumed_dir, "--trainer.max_steps", "4", "--ckpt_path", str(checkpoint_path))
    [resumed] = list(resumed_dir.glob("tiny/version_*/checkpoints/*.ckpt"))
    assert torch.load(resumed, weights_only=False)["global_step"] == 4


@pytest.mark.skipif(not REAL_CLIP.is_file(), reason="../shared/data/carphone_pristine.mp4 is absent")
def test_real_clip_loads_and_trains(tmp_path):
    data = ReferenceVideoDataModule("a man talking on a phone in a moving car", str(REAL_CLIP), num_frames=4,
                                    frame_stride=8, height=32, width=40, steps_per_epoch=2)
    assert data.video_CFHW.shape == (3, 4, 32, 40) and data.fps == pytest.approx(29.97, abs=0.01)
    module = MotionCustomizationModule(lora_rank=4)
    trainer = Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path,
                      callbacks=[ExportLoRA(str(tmp_path / "lora.safetensors"))])
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/loss"])


@pytest.mark.parametrize("override, expected", [
    (["--data.init_args.video_path", "/nonexistent/clip.mp4"], "clip.mp4"),
    (["--data.init_args.prompt", " "], "prompt is empty"),
    (["--model.init_args.motion_boundary", "5000"], "motion_boundary"),
])
def test_cli_bad_input_is_one_error_line(tmp_path, capsys, override, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", TINY, "--trainer.default_root_dir", str(tmp_path), *override])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and expected in error_lines[0], err[-2000:]
    assert "Traceback" not in err and "Union subtypes" not in err
