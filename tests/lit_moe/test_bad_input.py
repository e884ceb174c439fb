"""Bad input ends with one clear error (exit code 2, no traceback) before any training step."""

from __future__ import annotations

import glob

import pytest
import yaml

from lit_core.cli import main
from tests.lit_moe.cli_helpers import TINY_CONFIG, small_run_args


def _fails(tmp_path, capsys, *extra: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", TINY_CONFIG, *small_run_args(tmp_path), *extra])
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    assert not glob.glob(str(tmp_path / "**/*.ckpt"), recursive=True), "training must not have started"
    return stderr


def _files_source(path) -> list[str]:
    return ["--data", "lit_moe.data.LocalTextFiles", "--data.init_args.train_files", f"[{path}]"]


def test_missing_data_file(tmp_path, capsys):
    err = _fails(tmp_path, capsys, *_files_source(tmp_path / "nowhere.txt"))
    assert "data file(s) not found" in err and "nowhere.txt" in err


def test_empty_corpus(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    err = _fails(tmp_path, capsys, *_files_source(empty))
    assert f"data file {empty} has no text" in err


def test_corpus_shorter_than_one_sequence(tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("a few words only\n" * 3)
    err = _fails(tmp_path, capsys, *_files_source(short))
    assert "shorter than one sequence" in err and "seq_len=64" in err


def test_unknown_tokenizer_path(tmp_path, capsys):
    err = _fails(tmp_path, capsys, "--data.init_args.tokenizer", str(tmp_path / "no_tokenizer"))
    assert "tokenizer" in err and "not found" in err


def test_vocabulary_larger_than_the_model(tmp_path, capsys):
    err = _fails(tmp_path, capsys, "--model.init_args.config.vocab_size", "100")
    assert "257 tokens" in err and "vocab_size is 100" in err


def test_unknown_config_key_on_the_command_line(tmp_path, capsys):
    err = _fails(tmp_path, capsys, "--model.init_args.config.num_expertz", "4")
    assert "num_expertz" in err


def test_unknown_config_key_in_a_yaml_file(tmp_path, capsys):
    config = yaml.safe_load(open(TINY_CONFIG))
    config["model"]["init_args"]["config"]["routr"] = "topk"
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(config))
    err = _fails(tmp_path, capsys, "--config", str(typo))
    assert "routr" in err


def test_invalid_model_shape(tmp_path, capsys):
    err = _fails(tmp_path, capsys, "--model.init_args.config.top_k", "9")
    assert "top_k=9" in err
