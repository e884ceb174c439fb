"""configs/trainer presets compose with experiment configs and mean what they say."""

from __future__ import annotations

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch.strategies import Strategy

from lit_core.cli import main
from lit_moe.model import MoETransformer, MoETransformerConfig
from lit_moe.model.transformer import Block
from tests.conftest import REPO_ROOT
from tests.lit_moe.cli_helpers import TINY_CONFIG, small_run_args

PRESETS = sorted(p.name for p in (REPO_ROOT / "configs/trainer").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_with_the_tiny_config(preset, capsys):
    with pytest.raises(SystemExit) as exit_info:
        preset_config = str(REPO_ROOT / "configs/trainer" / preset)
        main(["fit", "--config", TINY_CONFIG, "--config", preset_config, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    preset_values = yaml.safe_load((REPO_ROOT / "configs/trainer" / preset).read_text())
    for section, values in preset_values.items():
        if section == "model":
            section_printed, values = printed["model"]["init_args"], values["init_args"]
        else:
            section_printed = printed[section]
        for key, value in values.items():
            got = section_printed[key]
            if isinstance(value, dict):
                assert got["class_path"] == value["class_path"]
            else:
                assert got == value, f"{preset}: {section}.{key}"


def test_fsdp_preset_resolves_the_wrap_policy_class_path():
    raw = yaml.safe_load((REPO_ROOT / "configs/trainer/fsdp_gpu.yaml").read_text())["trainer"]["strategy"]
    parser = ArgumentParser()
    parser.add_subclass_arguments(Strategy, "strategy")
    strategy = parser.instantiate_classes(parser.parse_object({"strategy": raw})).strategy
    assert Block in strategy.kwargs["auto_wrap_policy"]._module_classes
    # one activation-checkpointing mechanism: the module's flag (parallelize), not the strategy's policy
    assert not strategy._activation_checkpointing_kwargs
    assert strategy.sharding_strategy.name == "FULL_SHARD"


def test_fsdp2_preset_sizes_the_data_parallel_mesh_from_the_devices():
    from lit_core.fsdp2 import FSDP2Strategy

    raw = yaml.safe_load((REPO_ROOT / "configs/trainer/fsdp2.yaml").read_text())["trainer"]["strategy"]
    parser = ArgumentParser()
    parser.add_subclass_arguments(Strategy, "strategy")
    strategy = parser.instantiate_classes(parser.parse_object({"strategy": raw})).strategy
    assert isinstance(strategy, FSDP2Strategy)
    strategy.num_nodes, strategy._num_processes_for_test = 2, 4
    type(strategy).num_processes = property(lambda self: getattr(self, "_num_processes_for_test", 1))
    try:
        strategy._data_parallel_size = strategy.num_nodes * strategy.num_processes
        assert strategy._data_parallel_size == 8 and strategy._tensor_parallel_size == 1
    finally:
        del type(strategy).num_processes


@pytest.mark.parametrize("router,backend", [("default", "grouped_mm"), ("expert_group", "grouped_mm"),
                                            ("expert_group", "fused"), ("topk", "fused")])
def test_activation_checkpointing_gives_identical_loss_gradients_and_fidelity_capture(router, backend):
    """Blocks wrapped from outside (parallelize) recompute in backward: same gradients, same state-dict keys,
    and the fidelity hooks see the first forward's input and the real upstream gradient."""
    from lit_moe.callbacks.router_fidelity import _Capture
    from lit_moe.parallelize import parallelize

    torch.manual_seed(0)
    config = MoETransformerConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, num_experts=4, top_k=2,
                                  d_expert=32, router=router, backend=backend, max_seq_len=16)
    plain = MoETransformer(config)
    checkpointed = MoETransformer(config)
    checkpointed.load_state_dict(plain.state_dict())
    parallelize(checkpointed, activation_checkpointing=True)
    assert list(checkpointed.state_dict()) == list(plain.state_dict())
    tokens = torch.randint(0, 64, (2, 16))
    captures = {}
    for name, model in (("plain", plain), ("checkpointed", checkpointed)):
        captures[name] = {i: _Capture(layer) for i, layer in model.moe_layers().items()}
        out = model(tokens)
        (out.logits_BSV.float().logsumexp(-1).mean() + out.auxiliary_loss()).backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    for index, capture in captures["checkpointed"].items():
        assert capture.grad_TD is not None
        torch.testing.assert_close(captures["plain"][index].x_TD, capture.x_TD)
        torch.testing.assert_close(captures["plain"][index].grad_TD, capture.grad_TD)


def test_gradient_accumulation_updates_defaults_once_per_optimizer_step(tmp_path):
    """2 micro-batches of 4 sequences == 1 batch of 8 for the default vectors (aux loss off)."""
    states = {}
    for name, batch, accumulate in (("full", "8", "1"), ("accumulated", "4", "2")):
        prefix = tmp_path / name
        main(["fit", "--config", TINY_CONFIG, *small_run_args(tmp_path / name, max_steps=3),
              "--data.init_args.batch_size", batch, "--trainer.accumulate_grad_batches", accumulate,
              "--data.init_args.shuffle", "false", "--model.init_args.config.aux_loss_coef", "0",
              "--trainer.callbacks+=tests.lit_moe.recording_callbacks.SaveRouterStateAtEnd",
              "--trainer.callbacks.prefix", str(prefix)])
        states[name] = torch.load(f"{prefix}.rank0.pt")
    for key, value in states["full"].items():
        torch.testing.assert_close(states["accumulated"][key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("preset", ["bf16_mixed.yaml", "bf16_true.yaml"])
def test_bf16_presets_train(tmp_path, preset):
    cli = main(["fit", "--config", TINY_CONFIG, "--config", str(REPO_ROOT / "configs/trainer" / preset),
                *small_run_args(tmp_path, max_steps=3)])
    assert cli.trainer.global_step == 3
    for layer in cli.model.model.moe_layers().values():
        assert torch.isfinite(layer.default_vectors_ED).all() and layer.default_vectors_ED.norm() > 0


def test_aux_loss_is_computed_per_micro_batch():
    """Under gradient accumulation (and per rank) the Switch loss uses each micro-batch's own load
    fractions f_i and mean probabilities P_i; Lightning averages the micro-batch losses."""
    from lit_moe.module import LanguageModelingModule

    torch.manual_seed(0)
    module = LanguageModelingModule(MoETransformerConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2,
                                                         num_experts=4, top_k=1, d_expert=16, max_seq_len=16))
    module.configure_model()
    module.log = lambda *args, **kwargs: None
    tokens = torch.randint(0, 64, (8, 17))
    micro_batches = [(tokens[:4, :-1], tokens[:4, 1:]), (tokens[4:, :-1], tokens[4:, 1:])]
    full_batch = (tokens[:, :-1], tokens[:, 1:])

    def aux_of(batch):
        return module.model(batch[0]).auxiliary_loss()

    for batch in micro_batches:
        loss = module.training_step(batch, 0)
        lm = torch.nn.functional.cross_entropy(module.model(batch[0]).logits_BSV.flatten(0, 1), batch[1].flatten())
        torch.testing.assert_close(loss, lm + aux_of(batch))
    per_micro_batch_mean = (aux_of(micro_batches[0]) + aux_of(micro_batches[1])) / 2
    assert not torch.allclose(per_micro_batch_mean, aux_of(full_batch))  # f_i P_i is not linear in the batch
    assert len(module._pending_stats[0]) == 2  # the EMA statistics, in contrast, are summed once per step
