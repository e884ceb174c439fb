"""The shipped analysis configs end to end through cli.py: train the tiny dense/MoE pair (overlays on
configs/moe/tiny.yaml), MoE Lens on the MoE checkpoint, harvest both, train the crosscoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import main
from tests.conftest import REPO_ROOT
from tests.lit_moe.cli_helpers import TINY_CONFIG, read_events, small_run_args

ANALYSIS = REPO_ROOT / "configs/analysis"


@pytest.fixture(scope="module")
def pair_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    shared = {"data.init_args.seq_len": "32", "model.init_args.config.max_seq_len": "32"}
    main(["fit", "--config", TINY_CONFIG, "--config", str(ANALYSIS / "pair_moe.yaml"),
          *small_run_args(root, max_steps=4, **shared)])
    main(["fit", "--config", TINY_CONFIG, "--config", str(ANALYSIS / "pair_dense.yaml"),
          *small_run_args(root, max_steps=4, **shared, **{"model.init_args.config.first_k_dense": "2",
                                                          "model.init_args.config.d_dense": "128"})])
    # checkpoints live in each run's own version folder: runs/analysis_<name>/version_0/checkpoints/
    checkpoints = {name: root / f"analysis_{name}" / "version_0" / "checkpoints" / "last.ckpt"
                   for name in ("moe", "dense")}
    assert all(path.is_file() for path in checkpoints.values())
    return root, checkpoints


def test_lens_config_writes_tables_plots_and_dashboards(pair_checkpoints):
    root, checkpoints = pair_checkpoints
    cli = main(["test", "--config", str(ANALYSIS / "lens.yaml"), "--model.checkpoint", str(checkpoints["moe"]),
                "--trainer.logger.init_args.save_dir", str(root), "--data.seq_len", "32",
                "--data.tokens_per_domain", "512", "--data.batch_size", "8"])
    folder = Path(cli.trainer.logger.log_dir)
    for name in ("lens.json", "routing_shares.csv", "coverage.csv", "early_decoding.csv", "perplexity.csv",
                 "routing_docs.png", "routing_code.png", "early_decoding.png", "perplexity.png"):
        assert (folder / name).stat().st_size > 0, name
    report = json.loads((folder / "lens.json").read_text())
    assert set(report["domains"]) == {"docs", "code"} and report["moe_layers"] == [0, 1]
    assert report["domains"]["docs"]["tokens"] == 512
    perplexity = report["domains"]["code"]["perplexity"]
    assert len(perplexity["plain"]) == 2 and perplexity["plain"][1] == perplexity["renormalised"][1]
    rows = (folder / "routing_shares.csv").read_text().splitlines()
    assert rows[0].startswith("domain,layer,expert,share") and len(rows) == 1 + 2 * 2 * 8
    events = read_events(folder)
    assert {"lens/routing/docs", "lens/early_decoding", "lens/perplexity"} <= set(events.Tags()["images"])
    assert {"lens/docs/ppl_plain_top1", "lens/code/cos_top1_plain_by_layer"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("lens/code/coverage_50_by_layer")) == 2  # one point per MoE layer


def test_harvest_and_crosscoder_configs_train_and_write_dashboards(pair_checkpoints):
    root, checkpoints = pair_checkpoints
    cache = root / "cache"
    models = "{dense: %s, moe: %s}" % (checkpoints["dense"], checkpoints["moe"])
    main(["predict", "--config", str(ANALYSIS / "harvest.yaml"), "--model.models", models,
          "--model.sites", "{dense: [resid_post.1], moe: [resid_post.1]}", "--model.cache_dir", str(cache),
          "--trainer.default_root_dir", str(root), "--data.seq_len", "32", "--data.tokens_per_domain", "2048",
          "--data.batch_size", "16"])
    assert (cache / "meta.json").is_file() and len(list(cache.glob("shard_*.bin"))) == 8
    cli = main(["fit", "--config", str(ANALYSIS / "crosscoder.yaml"), "--data.cache_dir", str(cache),
                "--data.sites", "[dense/resid_post.1, moe/resid_post.1]", "--data.batch_size", "256",
                "--trainer.max_steps", "24", "--trainer.val_check_interval", "12", "--trainer.log_every_n_steps", "4",
                "--trainer.logger.init_args.save_dir", str(root), "--model.dict_size", "256", "--model.k", "8",
                "--model.num_shared", "16", "--model.warmup_steps", "4", "--model.threshold_start_step", "6",
                "--model.dead_tokens", "1024"])
    folder = Path(cli.trainer.logger.log_dir)
    metrics = json.loads((folder / "crosscoder_metrics.json").read_text())
    assert metrics["step"] == 24 and set(metrics["fve"]) == {"dense", "moe"}
    assert all(0.0 < value <= 1.0 for value in metrics["fve"].values())
    assert metrics["class_counts"]["shared (designated)"] == 16 and sum(metrics["class_counts"].values()) == 256
    for name in ("features.csv", "relative_decoder_norm.png", "log_density_by_class.png", "top_contexts.md"):
        assert (folder / name).stat().st_size > 0, name
    assert "«" in (folder / "top_contexts.md").read_text()
    events = read_events(folder)
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/aux_loss", "train/fve/moe", "val/fve/dense", "val/fve/moe", "val/l0",
            "val/dead_fraction", "train/threshold"} <= scalars
    assert [e.step for e in events.Scalars("val/fve/moe")] == [12, 24]
    histograms = set(events.Tags()["histograms"])
    assert "crosscoder/relative_decoder_norm" in histograms
    assert any(tag.startswith("crosscoder/log10_density/") for tag in histograms)
    assert {"crosscoder/relative_decoder_norm", "crosscoder/log_density_by_class"} <= set(events.Tags()["images"])
    assert "crosscoder/top_contexts/text_summary" in events.Tags()["tensors"]


def test_lens_config_with_a_missing_checkpoint_fails_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["test", "--config", str(ANALYSIS / "lens.yaml"), "--model.checkpoint", str(tmp_path / "nope.ckpt"),
              "--trainer.logger.init_args.save_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "nope.ckpt not found" in capsys.readouterr().err


def test_lens_on_a_dense_checkpoint_says_it_needs_moe_layers(pair_checkpoints, capsys):
    root, checkpoints = pair_checkpoints
    with pytest.raises(SystemExit) as exit_info:
        main(["test", "--config", str(ANALYSIS / "lens.yaml"), "--model.checkpoint", str(checkpoints["dense"]),
              "--trainer.logger.init_args.save_dir", str(root / "dense_lens"), "--data.seq_len", "32",
              "--data.tokens_per_domain", "256"])
    assert exit_info.value.code == 2
    assert "has no MoE layer" in capsys.readouterr().err
