"""The MoE dashboards of a real ``cli.py fit`` run, read back from the event files: every tag, each
measurement written once at the step it was measured, the heatmap image, the run summary, hp_metric,
the custom-scalars layout."""

from __future__ import annotations

import numpy as np
import pytest

from lit_core.cli import main
from lit_moe.callbacks.routing_dashboard import load_heatmap
from tests.lit_moe.cli_helpers import TINY_CONFIG, read_events, small_run_args

LAYER_SCALARS = ["max_load", "cv", "load_entropy", "router_entropy", "dead_experts", "concentration", "aux_loss",
                 "default_norm", "grad_fidelity_cos", "grad_norm_ratio"]
TRAIN_SCALARS = ["train/loss", "val/loss", "val/ppl", "train/lr", "train/grad_norm", "train/tokens_per_s",
                 "train/tflops", "train/mfu", "hp_metric"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dashboards")
    cli = main(["fit", "--config", TINY_CONFIG, *small_run_args(root, max_steps=6)])
    return cli, read_events(cli.trainer.logger.log_dir)


def test_every_dashboard_tag_is_written(run):
    cli, events = run
    assert cli.trainer.global_step == 6
    scalars = set(events.Tags()["scalars"])
    expected = set(TRAIN_SCALARS) | {f"moe/layer{i}/{name}" for i in (0, 1) for name in LAYER_SCALARS}
    assert expected <= scalars, f"missing: {sorted(expected - scalars)}"
    assert not any(tag.endswith("/z_loss") for tag in scalars), "z_loss_coef is 0: no flat z_loss cards"
    assert events.Tags()["histograms"] == []  # the edge-bucket histogram gave way to the heatmap


def test_fidelity_is_written_once_at_each_measured_step(run):
    _, events = run
    for layer in (0, 1):
        steps = [e.step for e in events.Scalars(f"moe/layer{layer}/grad_fidelity_cos")]
        assert steps == [0, 2, 4], steps  # measured every 2 steps; no repeats, no late copies
        assert all(-1.0 <= e.value <= 1.0 for e in events.Scalars(f"moe/layer{layer}/grad_fidelity_cos"))
    loss_steps = {e.step for e in events.Scalars("train/loss")}
    assert {0, 2, 4} <= loss_steps  # the same step axis as Lightning's own train/* scalars
    load_steps = [e.step for e in events.Scalars("moe/layer0/max_load")]
    assert load_steps == sorted(set(load_steps)) == list(range(6))


def test_heatmap_summary_and_hp_metric(run):
    cli, events = run
    heatmaps = events.Images("moe/expert_load_heatmap")
    assert [image.step for image in heatmaps] == [0, 2, 4]
    assert heatmaps[0].width > 200 and heatmaps[0].height > 100
    tensors = set(events.Tags()["tensors"])
    assert any(tag.startswith("run/summary") for tag in tensors), tensors
    summary = next(events.Tensors(t)[0] for t in tensors if t.startswith("run/summary"))
    text = summary.tensor_proto.string_val[0].decode()
    assert "active per token" in text and "router" in text and "tokens / optimizer step" in text
    assert "| tokens / optimizer step | 256 |" in text  # batch 4 x seq_len 64 x 1 rank, no accumulation
    assert "router: default" in text  # the resolved config, verbatim
    assert any("custom_scalars" in tag for tag in tensors)
    val_losses = [e.value for e in events.Scalars("val/loss")]
    hp = [e.value for e in events.Scalars("hp_metric")]
    assert hp[-1] == pytest.approx(min(val_losses)) and -1.0 not in hp


def test_throughput_uses_the_model_flops_per_token(run):
    cli, events = run
    config = cli.model.config  # 2 layers, d 64, 8 experts top-2 of width 64, byte vocabulary
    embeddings = 2 * config.vocab_size * 64
    attention = 4 * 64 * 64 + 2 * 64  # q, k, v, out projections and the two norms of a block
    active = 2 * (attention + 64 * 8 + 2 * 3 * 64 * 64) + 64  # router, 2 active experts; final norm
    flops_per_token = 6 * active + 12 * 2 * 64 * 64  # 6 N_active + 12 L d S (S = 64)
    assert config.num_parameters()["active"] - embeddings == active
    tokens = {e.step: e.value for e in events.Scalars("train/tokens_per_s")}
    tflops = {e.step: e.value for e in events.Scalars("train/tflops")}
    mfu = {e.step: e.value for e in events.Scalars("train/mfu")}
    assert tokens.keys() == tflops.keys() == mfu.keys() and len(tokens) >= 4
    for step, rate in tokens.items():
        assert tflops[step] == pytest.approx(rate * flops_per_token / 1e12, rel=1e-5)
        assert mfu[step] == pytest.approx(tflops[step], rel=1e-5)  # peak_flops_per_s = 1e12 in the test


def test_heatmap_image_shows_the_load_per_layer_and_expert():
    load_LE = np.array([[8.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    image = load_heatmap(load_LE, ["0", "1"], "t")
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.std() > 10  # not blank
