import io
import json
import re

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cli import main
from lit_video.components import ComponentsSpec
from lit_video.dit.config import TinyDiTConfig
from lit_video.dit.module import DiTMotionCustomizationModule
from lit_video.lora import lora_layers, read_lora_file
from tests.lit_video.helpers import REPO_ROOT

FRAMES = {"wan": 5, "cogvideox": 9, "latte": 4}  # Wan: 4k + 1, CogVideoX: 8k + 1, tiny Latte: its video_length
WINDOW_LOW = {"wan": 700.0, "cogvideox": 417.0, "latte": 600.0}  # σ* = 0.7 → t = 700; ModelScope 600 → CogVideoX 417


def small(family: str) -> list[str]:
    return ["--trainer.enable_progress_bar", "false", "--data.init_args.num_frames", str(FRAMES[family]),
            "--data.init_args.height", "16", "--data.init_args.width", "16"]


@pytest.mark.parametrize("family", ["wan", "cogvideox", "latte"])
def test_cli_fit_on_the_tiny_dit_config_writes_gifs_scalars_and_a_transformer_lora(tmp_path, family):
    main(["fit", "--config", str(REPO_ROOT / f"configs/video/{family}_tiny.yaml"),
          "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path),
          "--trainer.log_every_n_steps", "1", "--trainer.max_steps", "3", "--model.init_args.lora_rank", "4",
          "--trainer.callbacks.init_args.every_n_steps", "2", "--trainer.callbacks.init_args.num_inference_steps", "3",
          "--data.init_args.generated_clip_dir", str(tmp_path / "clip"), *small(family)])
    [run] = list(tmp_path.glob(f"{family}_tiny/version_*"))
    events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0}).Reload()
    assert len(events.Scalars("train/loss")) == 3
    assert all(WINDOW_LOW[family] - 1e-3 <= e.value <= 1000 for e in events.Scalars("train/timestep"))
    gif = Image.open(io.BytesIO(events.Images("samples/a_red_square_moving_right")[-1].encoded_image_string))
    assert gif.format == "GIF" and gif.n_frames == FRAMES[family] and gif.size == (16, 16)
    assert (run / "samples" / "step_000003" / "a_red_square_moving_right.gif").is_file()
    state, metadata = read_lora_file(run / "lora" / "pytorch_lora_weights.safetensors")
    layer = r"transformer\.(blocks|transformer_blocks)"
    if family == "latte":
        layer = r"transformer\.temporal_transformer_blocks"
    assert state and all(re.match(layer + r"\.\d+\.attn1\.", key) for key in state)
    assert metadata["lit_video"]["motion_boundary"] == pytest.approx(WINDOW_LOW[family])
    assert metadata["lit_video"]["family"] == family
    if family == "wan":
        assert metadata["lit_video"]["motion_boundary_sigma"] == pytest.approx(0.7)


@pytest.mark.parametrize("family", ["wan", "cogvideox", "latte"])
def test_probe_on_the_tiny_dit_config_writes_table_plot_and_gifs(tmp_path, family):
    main(["predict", "--config", str(REPO_ROOT / f"configs/video/probe_{family}_tiny.yaml"),
          "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path),
          "--model.init_args.num_inference_steps", "4", "--model.init_args.num_boundaries", "3",
          "--data.init_args.generated_clip_dir", str(tmp_path / "clip"), *small(family)])
    [folder] = list(tmp_path.glob("probe/version_*/probe"))
    rows = (folder / "probe.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2 * 3
    summary = json.loads((folder / "probe.json").read_text())
    assert summary["num_train_timesteps"] == 1000 and len(summary["inference_timesteps"]) == 4
    by_window = {(r["kind"], r["boundary"]): r for r in summary["results"]}
    assert by_window[("late", 1000)]["edited_steps"] == 4 and by_window[("early", 1000)]["edited_steps"] == 0
    for boundary in (0, 500, 1000):  # late and early windows of one boundary split the steps
        assert by_window[("late", boundary)]["edited_steps"] + by_window[("early", boundary)]["edited_steps"] == 4
    assert Image.open(folder / "probe.png").size == (750, 500)
    assert (folder / "videos" / "late_b1000.gif").is_file()
    events = EventAccumulator(str(folder.parent), size_guidance={"images": 0}).Reload()
    assert {"probe/curves", "probe/reference"} <= set(events.Tags()["images"])


@pytest.mark.parametrize("family", ["wan", "cogvideox", "latte"])
def test_lora_sampler_reads_the_dit_lora_and_writes_its_comparison_grid(tmp_path, family):
    config = {"wan": {}, "cogvideox": {"num_attention_heads": 4, "attention_head_dim": 8},
              "latte": {"num_attention_heads": 3, "attention_head_dim": 8}}[family]
    module = DiTMotionCustomizationModule(components=ComponentsSpec(family=family, tiny_dit=TinyDiTConfig(**config)),
                                          lora_preset="latte_temporal" if family == "latte" else "self_attn",
                                          lora_rank=4, motion_boundary=500, motion_boundary_units="timestep")
    for layer in lora_layers(module.components.unet):
        layer.lora_B["temporal"].weight.data.normal_(0, 0.3)
    module.save_lora(tmp_path / "lora" / "pytorch_lora_weights.safetensors")
    main(["predict", "--config", str(REPO_ROOT / "configs/video/sample_tiny.yaml"),
          "--model.init_args.lora_path", str(tmp_path), "--model.init_args.components.family", family,
          *[f"--model.init_args.components.tiny_dit.{k}={v}" for k, v in config.items()],
          "--model.init_args.prompts", '["a red square moving right"]', "--model.init_args.seeds", "[0]",
          "--model.init_args.num_inference_steps", "2", "--trainer.default_root_dir", str(tmp_path / "out"),
          "--trainer.logger.init_args.save_dir", str(tmp_path / "out"),
          "--data.init_args.generated_clip_dir", str(tmp_path / "clip"), *small(family)])
    [grid] = list((tmp_path / "out").glob("samples/version_*/predict/a_red_square_moving_right/grid.gif"))
    assert Image.open(grid).n_frames == FRAMES[family]
