"""Sampling a saved LoRA: variants equal the training module's sampler, grid files and TensorBoard image."""

import io
import json

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cli import main
from lit_video.components import ComponentsSpec, build_components
from lit_video.errors import VideoInputError
from lit_video.module import MotionCustomizationModule
from lit_video.predict import LoRASampler, resolve_lora_file
from lit_video.sampling import generate_video
from tests.lit_video.helpers import REPO_ROOT

SAMPLE_TINY = str(REPO_ROOT / "configs/video/sample_tiny.yaml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny module with non-zero LoRA weights, saved as a run folder would hold it."""
    torch.manual_seed(0)
    module = MotionCustomizationModule(lora_rank=4, motion_boundary=500)
    with torch.no_grad():
        for parameter in module.trainable_parameters():
            parameter.normal_(0, 0.2)
    run = tmp_path_factory.mktemp("run") / "tiny"
    module.save_lora(run / "version_0" / "lora" / "pytorch_lora_weights.safetensors")
    module.eval()
    return module, run


def test_sampler_variants_match_the_training_module(trained):
    module, run = trained
    sampler = LoRASampler(str(run), ["a green star"], num_inference_steps=4, guidance_scale=3.0)
    assert sampler.motion_boundary == 500  # t* read from the file's metadata
    sample = lambda variant: sampler.sample_variant("a green star", variant, 2, 16, 16, seed=3)  # noqa: E731
    reference = lambda mode: module.sample(["a green star"], 2, 16, 16, 4, 3.0, "", 3, lora_mode=mode)[0]  # noqa
    windowed, everywhere, base = sample("lora_windowed"), sample("lora_all"), sample("base")
    torch.testing.assert_close(windowed, reference("windowed"), rtol=0, atol=1e-6)
    torch.testing.assert_close(everywhere, reference("all"), rtol=0, atol=1e-6)
    plain = build_components(ComponentsSpec())  # the base model, never touched by peft
    torch.testing.assert_close(base, generate_video(plain, ["a green star"], 2, 16, 16, 4, 3.0, "", None, 3)[0],
                               rtol=0, atol=1e-6)
    assert (windowed - base).abs().max() > 1e-4 and (windowed - everywhere).abs().max() > 1e-4


def test_sampler_loads_a_lora_on_temporal_convolutions(tmp_path):
    """temporal_layers wraps UNet3D's Conv3d layers too: the file holds them and the sampler restores them."""
    torch.manual_seed(1)
    module = MotionCustomizationModule(lora_preset="temporal_layers", lora_rank=4, motion_boundary=500)
    with torch.no_grad():
        for parameter in module.trainable_parameters():
            parameter.normal_(0, 0.2)
    path = module.save_lora(tmp_path / "pytorch_lora_weights.safetensors")
    sampler = LoRASampler(str(path), ["a red dot"], num_inference_steps=3, guidance_scale=1.0)
    convs = [n for n, m in sampler.components.unet.named_modules()
             if isinstance(m, torch.nn.Conv3d) and ".temp_convs." in n and ".lora_A." in n]
    assert len(convs) == 8 * 4  # every temporal convolution of the tiny UNet3D carries the adapter
    module.eval()
    expected = module.sample(["a red dot"], 2, 16, 16, 3, 1.0, "", 5, lora_mode="all")[0]
    torch.testing.assert_close(sampler.sample_variant("a red dot", "lora_all", 2, 16, 16, seed=5), expected,
                               rtol=0, atol=1e-6)


def test_cli_predict_writes_grid_files_and_a_tensorboard_image(trained, tmp_path):
    _, run = trained
    main(["predict", "--config", SAMPLE_TINY, "--trainer.default_root_dir", str(tmp_path),
          "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
          "--model.init_args.lora_path", str(run), "--model.init_args.num_inference_steps", "3",
          "--model.init_args.prompts", "[a green triangle moving right]", "--model.init_args.seeds", "[0, 1]",
          "--model.init_args.negative_prompt", "blurry", "--model.init_args.track_grid_size", "3",
          "--data.init_args.num_frames", "4", "--data.init_args.height", "32", "--data.init_args.width", "32",
          "--data.init_args.generated_clip_dir", str(tmp_path / "clip")])
    [log_dir] = list(tmp_path.glob("samples/version_*"))
    folder = log_dir / "predict" / "a_green_triangle_moving_right"
    for variant in ("base", "lora_all", "lora_windowed"):
        assert (folder / f"seed1_{variant}.mp4").is_file() and (folder / f"seed1_{variant}.gif").is_file()
    grid = Image.open(folder / "grid.gif")
    assert grid.size == (4 * 32, 12 + 2 * 32) and grid.n_frames == 4  # 4 columns, a title strip, 2 seeds
    assert (folder / "grid.mp4").is_file()
    summary = json.loads((log_dir / "predict" / "predict.json").read_text())
    assert summary["motion_boundary"] == 500 and summary["negative_prompt"] == "blurry"
    scores = summary["prompts"]["a green triangle moving right"]
    assert set(scores) == {"base", "lora_all", "lora_windowed"}
    assert len(scores["base"]["motion_fidelity"]["values"]) == 2
    assert all(-1 <= v <= 1 for variant in scores.values() for v in variant["motion_fidelity"]["values"])
    events = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0}).Reload()
    [image] = events.Images("predict/a_green_triangle_moving_right/grid")
    logged = Image.open(io.BytesIO(image.encoded_image_string))
    assert logged.format == "GIF" and logged.size == grid.size and logged.n_frames == 4
    assert "predict/a_green_triangle_moving_right/lora_windowed/motion_fidelity" in events.Tags()["scalars"]


def test_missing_lora_is_one_clear_error(tmp_path):
    with pytest.raises(VideoInputError, match="no LoRA at"):
        resolve_lora_file(str(tmp_path))
