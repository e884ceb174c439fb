"""Checkpoints are never lost (D): each run of an experiment writes only into its own version folder,
``--ckpt_path last`` resumes the newest run into that folder, and an unreadable checkpoint is
replaced by the previous good one with one warning line (or refused with one error line)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from lit_core.cli import main
from tests.lit_moe.cli_helpers import TINY_CONFIG, read_events, small_run_args

EVERY_STEP = str(Path(__file__).with_name("every_step_checkpoints.yaml"))


def _fit(root, *extra: str, max_steps: int):
    return main(["fit", "--config", TINY_CONFIG, *small_run_args(root, max_steps=max_steps,
                                                                 **{"trainer.val_check_interval": "1000"}),
                 *extra])


def _step(path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def _digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_two_runs_never_share_a_checkpoint_and_last_resumes_the_newest(tmp_path):
    experiment = tmp_path / "moe_tiny"
    first = _fit(tmp_path, max_steps=2)
    assert first.trainer.logger.version == 0
    first_last = experiment / "version_0" / "checkpoints" / "last.ckpt"
    first_digest = _digest(first_last)
    second = _fit(tmp_path, max_steps=3)  # same save_dir and name, a new run
    assert second.trainer.logger.version == 1
    second_last = experiment / "version_1" / "checkpoints" / "last.ckpt"
    assert _step(second_last) == 3 and _digest(first_last) == first_digest and _step(first_last) == 2
    resumed = _fit(tmp_path, "--ckpt_path", "last", max_steps=5)
    assert resumed.trainer.global_step == 5
    assert resumed.trainer.logger.version == 1, "a resumed run logs into the folder of its checkpoint"
    assert sorted(p.name for p in experiment.iterdir()) == ["version_0", "version_1"]
    assert _step(second_last) == 5 and _step(experiment / "version_1" / "checkpoints" / "last.prev.ckpt") == 3
    assert _digest(first_last) == first_digest


def test_a_corrupt_last_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    _fit(tmp_path, "--config", EVERY_STEP, max_steps=3)
    folder = tmp_path / "moe_tiny" / "version_0" / "checkpoints"
    last, previous = folder / "last.ckpt", folder / "last.prev.ckpt"
    assert _step(last) == 3 and _step(previous) == 2
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # torn by a bad copy or disk
    capsys.readouterr()
    resumed = _fit(tmp_path, "--config", EVERY_STEP, "--ckpt_path", "last", max_steps=5)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: checkpoint")]
    assert warnings == [f"warning: checkpoint {last} is unreadable (truncated or not a torch checkpoint: File is not "
                        f"a zip file); resuming from the previous checkpoint {previous} instead"]
    assert resumed.trainer.global_step == 5
    newest_events = sorted((tmp_path / "moe_tiny" / "version_0").glob("events.out.tfevents.*"))[-1]
    assert min(e.step for e in read_events(newest_events).Scalars("train/loss")) >= 2  # from step 2, not 0
    # The same when the torn file is named explicitly (Lightning reads its hyperparameters first).
    assert _step(last) == 5 and _step(previous) == 4
    last.write_bytes(b"")
    again = _fit(tmp_path, "--config", EVERY_STEP, "--ckpt_path", str(last), max_steps=6)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: checkpoint")]
    assert warnings == [f"warning: checkpoint {last} is unreadable (an empty file); resuming from the previous "
                        f"checkpoint {previous} instead"]
    assert again.trainer.global_step == 6 and again.trainer.logger.version == 0


def test_a_corrupt_checkpoint_without_a_previous_one_is_one_error_line(tmp_path, capsys):
    broken = tmp_path / "model.ckpt"
    broken.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)
    with pytest.raises(SystemExit) as exit_info:
        _fit(tmp_path, "--ckpt_path", str(broken), max_steps=2)
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.startswith("error:")] == [
        f"error: checkpoint {broken} is unreadable (truncated or not a torch checkpoint: File is not a zip file) "
        f"and there is no previous checkpoint {tmp_path / 'model.prev.ckpt'} to fall back to: pass another "
        "--ckpt_path, or leave it out to start from scratch"]
    assert not list(tmp_path.glob("**/*.ckpt"))[1:], "nothing was trained or saved"
