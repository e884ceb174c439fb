"""The method's two claims on the SHIPPED toy model (lit_video/assets/toy_t2v), measured as in
benchmarks/toy_world.py with fewer boundaries and seeds (≈ 2 min on one CPU thread).

The thresholds sit below the values measured when the model was trained (docs/video.md, "Toy world");
they are not tuned to pass: a retrained model that loses the effect fails here.
"""

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cli import main
from lit_video.toy.evaluate import TOY_MODEL_PATH, compare_transfer, run_probe
from tests.lit_video.helpers import REPO_ROOT

BOUNDARIES = [0, 400, 600, 700, 800, 900, 1000]
TOY_YAML = str(REPO_ROOT / "configs/video/toy.yaml")


@pytest.fixture(scope="module")
def probe():
    results, summary = run_probe(TOY_MODEL_PATH, edit_prompt="a blue circle moving", boundaries=BOUNDARIES,
                                 num_inference_steps=10, seeds=[0, 1])
    return {(r.kind, r.boundary): r for r in results}, summary


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    """configs/video/toy.yaml as a user runs it: the temporal-layer LoRA on the red square moving right."""
    root = tmp_path_factory.mktemp("toy")
    cli = main(["fit", "--config", TOY_YAML, "--trainer.default_root_dir", str(root),
                "--trainer.logger.init_args.save_dir", str(root), "--trainer.enable_progress_bar", "false"])
    return cli, root


@pytest.fixture(scope="module")
def transfer(recipe_run):
    cli, _ = recipe_run
    return compare_transfer(cli.model, cli.datamodule.video_CFHW, prompt="a blue circle moving", seeds=(0, 1, 2, 3))


def test_probe_finds_a_defined_motion_boundary(probe):
    rows, summary = probe
    t_star = summary["motion_boundary"]
    assert t_star is not None and 450 < t_star < 700, t_star  # measured 555 here, 564 with 11 boundaries
    source = summary["motion_source_resample"]
    assert source >= 0.85  # measured 0.912
    assert rows[("late", 400)].motion >= 0.8  # new prompt only on t < 400: motion kept (0.866)
    # new prompt on t >= 700: the motion drops (0.675), although this model's motion does not depend on
    # the words (the inverted noise carries it), so the drop is smaller than on a text-driven model
    assert rows[("early", 700)].motion <= source - 0.15
    assert rows[("early", 800)].motion >= source - 0.05  # t >= 800 only: motion intact (0.920)


def test_probe_appearance_follows_the_new_prompt_as_the_late_window_grows(probe):
    rows, _ = probe
    blue = [rows[("late", b)].appearance for b in BOUNDARIES]
    assert blue == sorted(blue), blue  # measured 0, 0, 11, 100, 100, 100, 100 (% of the shape in blue)
    assert rows[("late", 400)].appearance <= 10 and rows[("late", 700)].appearance >= 80
    # the window t < 700 turns the shape blue and keeps most of the motion (0.685 vs 0.675 for t >= 700)
    assert rows[("late", 700)].motion >= 0.6


def test_windowed_lora_transfers_the_reference_motion_to_a_new_subject(transfer):
    # measured 0.946 vs base 0.515 (4 seeds), 100 % blue: direction from the clip, colour from the prompt
    assert transfer["windowed"]["motion"] >= 0.8
    assert transfer["windowed"]["motion"] >= transfer["off"]["motion"] + 0.2
    assert transfer["windowed"]["colour"] >= 80


def test_toy_config_logs_motion_fidelity_and_exports_the_lora(recipe_run):
    _, root = recipe_run
    [run] = list(root.glob("toy/version_*"))
    events = EventAccumulator(str(run), size_guidance={"scalars": 0}).Reload()
    fidelity = events.Scalars("val/motion_fidelity")
    assert [e.step for e in fidelity] == [150, 300]
    assert fidelity[-1].value >= 0.75  # windowed LoRA samples of "a blue circle moving", 2 seeds (measured 0.872)
    assert (run / "lora" / "pytorch_lora_weights.safetensors").is_file()
