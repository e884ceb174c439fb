"""Bad input ends with one clear error line (exit code 2, no traceback, no usage dump) before any
training step."""

from __future__ import annotations

import glob
import sys

import pytest
import yaml

from lit_core.cli import main
from lit_core.config_compose import load_composed
from tests.lit_moe.cli_helpers import TINY_CONFIG, small_run_args


def _fails(tmp_path, capsys, *extra: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", TINY_CONFIG, *small_run_args(tmp_path), *extra])
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr and "usage:" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert not glob.glob(str(tmp_path / "**/*.ckpt"), recursive=True), "training must not have started"
    return errors[0]


def _only_line(capsys, *args: str) -> str:
    """A parse error: stderr is exactly one line."""
    with pytest.raises(SystemExit) as exit_info, pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["lit"])  # else Lightning warns that pytest's own arguments are there too
        main(["fit", "--config", TINY_CONFIG, *args])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


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
    assert err == ("error: unknown option 'model.init_args.config.num_expertz' of lit_moe.LanguageModelingModule "
                   "(did you mean 'model.init_args.config.num_experts'?); see --help for the accepted options")


@pytest.mark.parametrize("option, closest", [("--trainer.max_step", "trainer.max_steps"), ("--ckpt_pth", "ckpt_path"),
                                             ("--data.init_args.seq_lenn", "data.init_args.seq_len")])
def test_typo_names_the_closest_key(capsys, option, closest):
    line = _only_line(capsys, option, "3")
    assert f"unknown option '{option[2:]}'" in line and f"did you mean '{closest}'" in line


def test_prefix_abbreviations_are_refused(capsys):
    """argparse would silently read --...num_expert as --...num_experts."""
    line = _only_line(capsys, "--model.init_args.config.num_expert", "4")
    assert "unknown option 'model.init_args.config.num_expert'" in line and "num_experts'?" in line
    line = _only_line(capsys, "--trainer.max_step", "3")
    assert "unknown option 'trainer.max_step'" in line


def test_wrong_type_names_the_key_and_the_type(capsys):
    assert _only_line(capsys, "--model.init_args.config.num_experts", "four") == \
        "error: model.init_args.config.num_experts: expected int, got 'four'"
    assert _only_line(capsys, "--trainer.max_steps", "x") == "error: trainer.max_steps: expected int, got 'x'"


def test_invalid_choice_lists_the_allowed_values(capsys):
    assert _only_line(capsys, "--model.init_args.config.router", "topkk") == (
        "error: model.init_args.config.router: 'topkk' is not one of topk, default, dense, expert_group "
        "(did you mean 'topk'?)")
    line = _only_line(capsys, "--data", "lit_moe.data.LocalTextFiles", "--data.train_files", f"[{TINY_CONFIG}]",
                      "--data.text_documents", "paragraphs")
    assert line == ("error: data.init_args.text_documents: 'paragraphs' is not one of file, paragraph, line "
                    "(did you mean 'paragraph'?)")


def test_misspelt_class_path_names_the_closest_class(capsys):
    assert _only_line(capsys, "--data", "lit_moe.data.LocalTextFile") == (
        "error: data: cannot import class 'lit_moe.data.LocalTextFile': module 'lit_moe.data' has no "
        "'LocalTextFile' (did you mean 'lit_moe.data.LocalTextFiles'?)")


def test_unwritable_logger_save_dir(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", TINY_CONFIG, *small_run_args(tmp_path),
              "--trainer.logger.init_args.save_dir", str(blocker / "runs")])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: trainer.logger.init_args.save_dir '{blocker / 'runs'}' is not writable "
                      "(Not a directory): choose a folder you can write to with --trainer.logger.init_args.save_dir"]


def test_unknown_config_key_in_a_yaml_file(tmp_path, capsys):
    config = load_composed(TINY_CONFIG)
    config["model"]["init_args"]["config"]["routr"] = "topk"
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(config))
    err = _fails(tmp_path, capsys, "--config", str(typo))
    assert "unknown option 'model.init_args.config.routr'" in err
    assert "did you mean 'model.init_args.config.router'" in err


def test_invalid_model_shape(tmp_path, capsys):
    err = _fails(tmp_path, capsys, "--model.init_args.config.top_k", "9")
    assert "top_k=9" in err


@pytest.mark.parametrize("content, problem", [(b"", "is empty"),
                                              (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks binary")])
def test_empty_or_binary_text_file_is_named(tmp_path, capsys, content, problem):
    bad = tmp_path / "corpus.txt"
    bad.write_bytes(content)
    err = _fails(tmp_path, capsys, *_files_source(bad))
    assert err.startswith(f"error: data file {bad} {problem}")
