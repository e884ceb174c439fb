"""cli.py fit under FSDP2 (2 gloo processes) loads an imported OLMoE in configure_model, and the sharded
(distributed) checkpoint exports back to the Hugging Face layout."""

from __future__ import annotations

import pytest
import torch

from lit_moe.hf import export_checkpoint, load_hf
from tests.conftest import REPO_ROOT
from tests.lit_moe.cli_helpers import TINY_CONFIG, small_run_args
from tests.lit_moe.distributed.launch import TRAINER_CONFIGS, describe, run_cli
from tests.lit_moe.hf.helpers import save_tiny_with_tokenizer

pytest.importorskip("transformers")
pytestmark = pytest.mark.slow


def test_fsdp2_fit_from_hf_and_export_the_sharded_checkpoint(tmp_path):
    folder = tmp_path / "olmoe"
    save_tiny_with_tokenizer("olmoe", folder, scaled=True)
    # lr 1e-30 (0 is refused as bad input): each AdamW update is below half an ulp of every weight, so the
    # weights stay as loaded and the export must reproduce the folder bit for bit.
    args = ["fit", "--config", TINY_CONFIG, "--config", str(REPO_ROOT / "configs/moe/olmoe_continue.yaml"),
            "--config", str(TRAINER_CONFIGS / "fsdp2.yaml"), *small_run_args(tmp_path / "run", max_steps=2, **{
                "trainer.accelerator": "cpu", "trainer.devices": "2", "trainer.precision": "32-true",
                "model.init_args.init_from_hf": str(folder), "data.init_args.tokenizer": str(folder),
                "model.init_args.learning_rate": "1e-30", "model.init_args.calibration_batches": "1",
                "trainer.val_check_interval": "2"})]
    result = run_cli(args, timeout=400)
    assert result.returncode == 0, describe(result)
    (last,) = [p for p in (tmp_path / "run").rglob("last.ckpt") if p.is_dir()]
    export_checkpoint(last, tmp_path / "exported", tokenizer=folder)
    exported, original = load_hf(tmp_path / "exported", router="default"), load_hf(folder)
    for name, value in original.named_parameters():
        assert torch.equal(dict(exported.named_parameters())[name], value), name
    for layer in exported.moe_layers().values():
        assert layer.default_vectors_ED.abs().sum() > 0  # the Default-MoE state came through the checkpoint
