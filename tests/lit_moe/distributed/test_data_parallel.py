"""2-process DDP and FSDP2 on CPU (gloo): training, checkpoints, Default-MoE state across ranks."""

from __future__ import annotations

import pytest
import torch

from tests.lit_moe.distributed.launch import describe, fit_args, run_cli

pytestmark = pytest.mark.slow
SAVE_STATE = "--trainer.callbacks+=tests.lit_moe.recording_callbacks.SaveRouterStateAtEnd"


def _router_state(tmp_path, name, *extra, **overrides):
    prefix = tmp_path / name
    result = run_cli(fit_args(tmp_path / name, SAVE_STATE, f"--trainer.callbacks.prefix={prefix}", *extra,
                              **overrides))
    assert result.returncode == 0, describe(result)
    return prefix


@pytest.fixture(scope="module")
def single_process_state(tmp_path_factory):
    """1 process, 8 sequences per step: the reference for the 2 x 4 runs."""
    tmp_path = tmp_path_factory.mktemp("single")
    prefix = _router_state(tmp_path, "single", **{"data.init_args.batch_size": "8",
                                                  "model.init_args.config.bias_update_rate": "0.001"})
    return torch.load(f"{prefix}.rank0.pt")


@pytest.mark.parametrize("trainer_config", ["ddp.yaml", "fsdp2.yaml"])
def test_two_ranks_match_each_other_and_a_single_process_run(tmp_path, trainer_config, single_process_state):
    prefix = _router_state(tmp_path, "two", trainer_config=trainer_config, **{
        "trainer.devices": "2", "model.init_args.config.bias_update_rate": "0.001",
        "model.init_args.meta_init": "false"})
    rank0, rank1 = torch.load(f"{prefix}.rank0.pt"), torch.load(f"{prefix}.rank1.pt")
    assert rank0.keys() == rank1.keys() == single_process_state.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"{key} differs between ranks"
        torch.testing.assert_close(rank0[key], single_process_state[key], rtol=1e-5, atol=1e-6)
    assert all(rank0[f"{i}.default"].norm() > 0 for i in (0, 1))
    checkpoints = list((tmp_path / "two" / "moe_tiny" / "version_0" / "checkpoints").glob("last.ckpt*"))
    assert checkpoints, "no checkpoint written"
    assert [p.name for p in (tmp_path / "two" / "moe_tiny").iterdir()] == ["version_0"], "one run, one folder"
