"""Model-side bad input stops the run before step 1 with one ``error:`` line naming the key."""

from __future__ import annotations

import glob

import pytest

from lit_core.cli import main
from tests.lit_moe.cli_helpers import TINY_CONFIG, small_run_args


def _error_line(tmp_path, capsys, *extra: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", TINY_CONFIG, *small_run_args(tmp_path), *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not glob.glob(str(tmp_path / "**/*.ckpt"), recursive=True), "training must not have started"
    return err


def test_sequence_longer_than_the_rope_tables(tmp_path, capsys):
    err = _error_line(tmp_path, capsys, "--data.init_args.seq_len", "128")
    assert "data.seq_len=128 exceeds model.config.max_seq_len=64" in err
    assert not glob.glob(str(tmp_path / "**/version_*"), recursive=True), "refused before the run folder is written"


@pytest.mark.parametrize("value", ["0", "-0.001"])
def test_non_positive_learning_rate(tmp_path, capsys, value):
    err = _error_line(tmp_path, capsys, "--model.init_args.learning_rate", value)
    assert f"model.learning_rate={float(value)}" in err and "must be > 0" in err


def test_zero_experts_is_named_as_such(tmp_path, capsys):
    err = _error_line(tmp_path, capsys, "--model.init_args.config.num_experts", "0")
    assert "num_experts=0 must be >= 1" in err and "top_k" not in err


def test_unknown_router_lists_the_registered_ones(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", TINY_CONFIG, *small_run_args(tmp_path), "--model.init_args.config.router", "topq"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "topq" in err and "expert_group" in err
