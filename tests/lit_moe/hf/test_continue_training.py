"""cli.py fit continues an imported OLMoE under Default MoE: weights loaded, defaults calibrated, loss falls."""

from __future__ import annotations

import pytest
import torch

from cli import main
from lit_moe.hf import export_checkpoint, load_hf
from tests.conftest import REPO_ROOT
from tests.lit_moe.cli_helpers import TINY_CONFIG, read_events, small_run_args
from tests.lit_moe.hf.helpers import save_tiny_with_tokenizer

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow
CONTINUE = str(REPO_ROOT / "configs/moe/olmoe_continue.yaml")


def test_fit_continues_an_imported_olmoe_under_default_moe(tmp_path):
    folder = tmp_path / "olmoe"
    save_tiny_with_tokenizer("olmoe", folder)
    args = small_run_args(tmp_path / "run", max_steps=12, **{
        "model.init_args.init_from_hf": str(folder), "data.init_args.tokenizer": str(folder),
        "trainer.precision": "32-true", "model.init_args.learning_rate": "3e-3",
        "model.init_args.calibration_batches": "2", "trainer.val_check_interval": "12"})
    cli = main(["fit", "--config", TINY_CONFIG, "--config", CONTINUE, *args])
    model = cli.model.model
    assert model.config.router == "default" and model.config.qk_norm == "full" and model.config.num_experts == 6
    pretrained = load_hf(folder)
    moved = [name for name, p in pretrained.named_parameters()
             if not torch.allclose(p, dict(model.named_parameters())[name])]
    assert moved  # trained from the imported weights (not a fresh init: same shapes, loaded values)
    for layer in model.moe_layers().values():
        assert layer.default_vectors_ED.norm(dim=-1).min() > 0  # calibrated, then EMA-updated
    events = read_events(cli.trainer.logger.log_dir)
    losses = [e.value for e in events.Scalars("train/loss")]
    assert len(losses) >= 10
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1
    # The trained checkpoint exports back to the OLMoE layout; transformers and load_hf read it.
    (last,) = (tmp_path / "run").rglob("last.ckpt")
    export_checkpoint(last, tmp_path / "exported", tokenizer=folder)
    assert (tmp_path / "exported" / "tokenizer.json").is_file()
    reloaded = load_hf(tmp_path / "exported", router="default")
    for key, value in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "exported").eval()
    tokens = torch.arange(32).reshape(1, 32)
    topk = load_hf(tmp_path / "exported").eval()
    with torch.no_grad():
        torch.testing.assert_close(hf_model(tokens).logits, topk(tokens).logits_BSV, rtol=0, atol=1e-4)
    # cli.py predict reads the same Lightning checkpoint (configs/moe/generate_tiny.yaml).
    predicted = main(["predict", "--config", str(REPO_ROOT / "configs/moe/generate_tiny.yaml"),
                      "--model.init_args.source", str(last), "--model.init_args.tokenizer", str(folder),
                      "--model.init_args.max_new_tokens", "4",
                      "--trainer.logger.init_args.save_dir", str(tmp_path / "gen"),
                      "--model.init_args.output_file", str(tmp_path / "gen.jsonl")])
    assert predicted.model.model.config.router == "default"
    assert len((tmp_path / "gen.jsonl").read_text().splitlines()) == 3


def test_wrong_tokenizer_is_refused(tmp_path, capsys):
    folder = tmp_path / "olmoe"
    save_tiny_with_tokenizer("olmoe", folder)
    args = small_run_args(tmp_path / "run", max_steps=1, **{"model.init_args.init_from_hf": str(folder),
                                                            "trainer.precision": "32-true"})
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", TINY_CONFIG, "--config", CONTINUE, *args, "--data.init_args.tokenizer", "byte"])
    assert info.value.code == 2
    assert "set --data.init_args.tokenizer" in capsys.readouterr().err


def test_fit_upcycles_a_dense_llama_from_yaml(tmp_path):
    folder = tmp_path / "llama"
    save_tiny_with_tokenizer("llama", folder, tie_word_embeddings=False)
    args = small_run_args(tmp_path / "run", max_steps=8, **{
        "model.init_args.init_from_hf": str(folder), "data.init_args.tokenizer": str(folder),
        "trainer.precision": "32-true", "model.init_args.learning_rate": "3e-3",
        "model.init_args.upcycle.num_experts": "4",
        "trainer.val_check_interval": "8"})
    cli = main(["fit", "--config", TINY_CONFIG, "--config", str(REPO_ROOT / "configs/moe/upcycle_llama.yaml"), *args])
    model = cli.model.model
    assert model.config.num_experts == 4 and len(model.moe_layers()) == model.config.n_layers
    losses = [e.value for e in read_events(cli.trainer.logger.log_dir).Scalars("train/loss")]
    assert losses[-1] < losses[0]
