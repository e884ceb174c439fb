"""cli.py predict with configs/moe/generate_tiny.yaml: completions in a JSONL file and TensorBoard's Text tab."""

from __future__ import annotations

import json

import pytest
import torch

from cli import main
from tests.conftest import REPO_ROOT
from tests.lit_moe.cli_helpers import read_events
from tests.lit_moe.hf.helpers import save_tiny_with_tokenizer

pytest.importorskip("transformers")
CONFIG = str(REPO_ROOT / "configs/moe/generate_tiny.yaml")


def test_predict_writes_completions_to_file_and_tensorboard(tmp_path):
    folder = tmp_path / "qwen3_moe"
    hf_model = save_tiny_with_tokenizer("qwen3_moe", folder, scaled=True)
    cli = main(["predict", "--config", CONFIG, "--model.init_args.source", str(folder),
                "--model.init_args.tokenizer", "null", "--model.init_args.max_new_tokens", "6",
                "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
                "--trainer.default_root_dir", str(tmp_path)])
    log_dir = cli.trainer.logger.log_dir
    with open(f"{log_dir}/generations.jsonl") as handle:
        lines = [json.loads(line) for line in handle]
    assert [line["prompt"] for line in lines] == ["The for statement in Python", "A class definition",
                                                  "Exceptions are raised when"]
    tokenizer = cli.model.tokenizer
    eos = tokenizer.eos_id
    for line in lines:
        prompt_ids = torch.tensor([line["prompt_ids"]])
        expected = hf_model.generate(prompt_ids, max_new_tokens=6, do_sample=False, eos_token_id=eos,
                                     pad_token_id=eos)[0, prompt_ids.shape[1]:].tolist()
        assert line["completion_ids"] == expected  # greedy, stopping at the end-of-text token like transformers
        assert line["completion"] == tokenizer.decode([t for t in expected if t != eos])
    assert max(len(line["completion_ids"]) for line in lines) == 6
    events = read_events(log_dir)
    tags = events.Tags()["tensors"]
    assert {"generation/prompt_0/text_summary", "generation/prompt_2/text_summary"} <= set(tags)
    text = events.Tensors("generation/prompt_1/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "A class definition" in text
