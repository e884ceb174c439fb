"""End-to-end: cli.py fit on the shipped configs, config round trip, plug-ins, resume (dashboards:
tests/lit_moe/callbacks/test_dashboards.py)."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
import torch
import yaml

from lit_core.cli import main
from tests.lit_moe.cli_helpers import TINY_CONFIG, read_events, small_run_args


def test_print_config_round_trip_reproduces_the_run(tmp_path, capsys):
    args = ["fit", "--config", TINY_CONFIG, *small_run_args(tmp_path, max_steps=2)]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    config_file = tmp_path / "printed.yaml"
    config_file.write_text(printed)
    cli = main(["fit", "--config", str(config_file)])
    saved = yaml.safe_load((Path(cli.trainer.logger.log_dir) / "config.yaml").read_text())
    assert saved == yaml.safe_load(printed)
    capsys.readouterr()  # drop the run's own output
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config_file), "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out) == yaml.safe_load(printed)


def test_user_datamodule_plugs_in_by_class_path(tmp_path):
    args = small_run_args(tmp_path, max_steps=30)
    cli = main(["fit", "--config", TINY_CONFIG, *args, "--data", "tests.lit_moe.user_datamodule.CountingDataModule",
                "--data.vocab_size", "50", "--data.seq_len", "32", "--model.init_args.learning_rate", "0.01"])
    assert cli.model.config.vocab_size == 50  # linked from the user's datamodule
    losses = [e.value for e in read_events(cli.trainer.logger.log_dir).Scalars("train/loss")]
    assert losses[-1] < losses[0] - 0.5


def test_checkpoint_holds_default_vectors_and_resume_continues_from_them(tmp_path):
    first = main(["fit", "--config", TINY_CONFIG, *small_run_args(tmp_path, max_steps=4)])
    checkpoint = glob.glob(str(tmp_path / "**/last.ckpt"), recursive=True)
    assert checkpoint, "ModelCheckpoint(save_last=true) wrote no last.ckpt"
    state = torch.load(checkpoint[0], map_location="cpu", weights_only=False)["state_dict"]
    saved = {k: v for k, v in state.items() if k.endswith("default_vectors_ED")}
    assert len(saved) == 2 and all(v.norm() > 0 for v in saved.values())
    for index, layer in first.model.model.moe_layers().items():
        torch.testing.assert_close(saved[f"model.blocks.{index}.mlp.default_vectors_ED"], layer.default_vectors_ED)
    record = tmp_path / "at_start.pt"
    resumed = main(["fit", "--config", TINY_CONFIG, *small_run_args(tmp_path / "resume", max_steps=6),
                    "--trainer.callbacks+=tests.lit_moe.recording_callbacks.SaveDefaultVectorsAtStart",
                    "--trainer.callbacks.path", str(record), "--ckpt_path", checkpoint[0]])
    assert resumed.trainer.global_step == 6
    at_start = torch.load(record)
    for index in (0, 1):
        torch.testing.assert_close(at_start[index], saved[f"model.blocks.{index}.mlp.default_vectors_ED"])
        assert not torch.equal(resumed.model.model.moe_layers()[index].default_vectors_ED, at_start[index])
