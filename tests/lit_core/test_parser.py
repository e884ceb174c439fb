"""lit_core.parser: jsonargparse's nested error reports condensed to one line; no abbreviations."""

from __future__ import annotations

import subprocess
import sys

from lit_core.parser import FrameworkArgumentParser, summarize_error
from tests.conftest import REPO_ROOT

UNION_OF_LITERALS = '''Parser key "trainer.precision":
  Does not validate against any of the Union subtypes
  Subtypes: [typing.Literal[64, 32, 16], typing.Literal['16-mixed', 'bf16-mixed', '32-true'], <class 'NoneType'>]
  Errors:
    - Expected a typing.Literal[64, 32, 16]
    - Expected a typing.Literal['16-mixed', 'bf16-mixed', '32-true']
    - Expected a <class 'NoneType'>
  Given value type: <class 'str'>
  Given value: 16-mix'''

NESTED_TYPE = '''Parser key "model":
  Does not validate against any of the Union subtypes
  Subtypes: [<class 'lightning.pytorch.core.module.LightningModule'>, <class 'NoneType'>]
  Errors:
    - Problem with given class_path 'lit_moe.LanguageModelingModule':
        Parser key "config.num_experts":
          Expected a <class 'int'>. Got value: four
    - Expected a <class 'NoneType'>
  Given value type: <class 'jsonargparse._util.NestedArg'>
  Given value: NestedArg(key='config.num_experts', val='four')'''


def test_union_of_choices_lists_every_allowed_value():
    assert summarize_error(UNION_OF_LITERALS) == (
        "trainer.precision: '16-mix' is not one of 64, 32, 16, 16-mixed, bf16-mixed, 32-true, null "
        "(did you mean '16-mixed'?)")


def test_nested_class_key_is_written_out_in_full():
    assert summarize_error(NESTED_TYPE) == "model.init_args.config.num_experts: expected int, got 'four'"


def test_unknown_messages_still_come_out_as_one_line():
    assert summarize_error("first problem\n  second detail\n") == "first problem second detail"


def test_abbreviations_are_off_in_derived_class_parsers():
    parser = FrameworkArgumentParser(exit_on_error=False)
    parser.add_argument("--num_experts", type=int, default=1)
    assert parser.allow_abbrev is False
    try:
        parser.parse_args(["--num_expert", "4"])
    except Exception as error:  # noqa: BLE001 (jsonargparse's ArgumentError)
        assert "num_expert" in str(error)
    else:
        raise AssertionError("an abbreviated option was accepted")


def test_a_typo_prints_one_stderr_line_from_the_shell():
    result = subprocess.run([sys.executable, "cli.py", "fit", "--config", "configs/moe/tiny.yaml",
                             "--model.init_args.config.num_expert", "4"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin",
                                                         "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: unknown option 'model.init_args.config.num_expert' of lit_moe.LanguageModelingModule "
        "(did you mean 'model.init_args.config.num_experts'?); see --help for the accepted options"]


def test_a_missing_required_argument_names_its_full_key():
    message = '''Parser key "data":
  Does not validate against any of the Union subtypes
  Errors:
    - Problem with given class_path 'lit_moe.data.LocalTextFiles':
        the following arguments are required: train_files
    - Expected a <class 'NoneType'>
  Given value: Namespace(class_path='lit_moe.data.LocalTextFiles')'''
    assert summarize_error(message) == ("missing required option 'data.init_args.train_files': set it in the config "
                                        "or with --data.init_args.train_files")
