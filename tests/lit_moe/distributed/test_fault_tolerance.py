"""Crash, preemption and divergence: exact resume after SIGKILL, atomic checkpoints (the previous one
kept beside last.ckpt), SIGTERM/SIGUSR1 checkpoints, non-finite steps, mismatched checkpoints.
Checkpoints live in their run's folder: <save_dir>/moe_tiny/version_N/checkpoints."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.lit_moe.cli_helpers import read_events
from tests.lit_moe.distributed.launch import describe, fit_args, run_cli, start_cli

pytestmark = pytest.mark.slow
EVERY_STEP = str(Path(__file__).with_name("every_step_checkpoints.yaml"))


def _checkpoint_args() -> dict[str, str]:
    # Real training conditions: shuffled data, aux loss on.
    return {"data.init_args.shuffle": "true", "model.init_args.config.aux_loss_coef": "0.01"}


def _losses(experiment_dir) -> dict[int, float]:
    """train/loss by step over every version of an experiment (later versions, and in one version
    later event files, win)."""
    losses = {}
    for version in sorted(experiment_dir.glob("version_*"), key=lambda p: int(p.name.split("_")[1])):
        for events_file in sorted(version.glob("events.out.tfevents.*")):
            for event in read_events(events_file).Scalars("train/loss"):
                losses[event.step] = event.value
    return losses


def _checkpoints(root, version: int = 0):
    return root / "moe_tiny" / f"version_{version}" / "checkpoints"


def _wait_for(path, process, timeout=180.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"process ended early:\n{process.stdout.read()[-4000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.1)


def test_sigkill_then_resume_matches_the_uninterrupted_loss_curve(tmp_path):
    steps = 10
    reference = run_cli(fit_args(tmp_path / "reference", "--config", EVERY_STEP, max_steps=steps, **_checkpoint_args()))
    assert reference.returncode == 0, describe(reference)
    crashed = run_cli(fit_args(tmp_path / "crash", "--config", EVERY_STEP,
                               "--trainer.callbacks+=tests.lit_moe.recording_callbacks.KillAtStep",
                               "--trainer.callbacks.step=6", max_steps=steps, **_checkpoint_args()))
    assert crashed.returncode == -signal.SIGKILL, describe(crashed)
    resumed = run_cli(fit_args(tmp_path / "crash", "--config", EVERY_STEP, "--ckpt_path", "last", max_steps=steps,
                               **_checkpoint_args()))
    assert resumed.returncode == 0, describe(resumed)
    expected = _losses(tmp_path / "reference" / "moe_tiny")
    got = _losses(tmp_path / "crash" / "moe_tiny")
    assert sorted(expected) == list(range(steps - 1)) or len(expected) >= steps - 1
    assert got.keys() == expected.keys()
    for step in sorted(expected):
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-7), f"step {step}"
    # The resumed run continued in the crashed run's folder, in a second events file.
    assert [p.name for p in (tmp_path / "crash" / "moe_tiny").iterdir()] == ["version_0"]
    events_files = sorted((tmp_path / "crash" / "moe_tiny" / "version_0").glob("events.out.tfevents.*"))
    assert len(events_files) == 2
    resumed_steps = [e.step for e in read_events(events_files[-1]).Scalars("train/loss")]
    assert min(resumed_steps) >= 5, "the restarted run must continue from the checkpoint, not from step 0"
    # TensorBoard reading the whole folder sees each step once: the crashed run's events from the
    # resumed step on are purged.
    merged = [e.step for e in read_events(tmp_path / "crash" / "moe_tiny" / "version_0").Scalars("train/loss")]
    assert merged == sorted(set(merged)) and set(merged) == set(expected)


def test_kill_during_checkpoint_write_leaves_the_previous_checkpoint_loadable(tmp_path):
    marker = tmp_path / "stalled"
    process = start_cli(fit_args(tmp_path, "--config", EVERY_STEP,
                                 "--trainer.plugins=tests.lit_moe.fault_injection.StallingCheckpointIO",
                                 f"--trainer.plugins.marker={marker}", "--trainer.plugins.healthy_saves=2",
                                 max_steps=20, **_checkpoint_args()))
    _wait_for(marker, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    directory = _checkpoints(tmp_path)
    checkpoint = torch.load(directory / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2
    previous = torch.load(directory / "last.prev.ckpt", map_location="cpu", weights_only=True)
    assert previous["global_step"] == 1, "the checkpoint before last.ckpt is kept beside it"
    assert any(p.name.startswith(".last.ckpt.tmp-") for p in directory.iterdir()), "the torn write should be aside"
    resumed = run_cli(fit_args(tmp_path, "--config", EVERY_STEP, "--ckpt_path", "last", max_steps=3,
                               **_checkpoint_args()))
    assert resumed.returncode == 0, describe(resumed)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_preemption_signal_saves_a_checkpoint_and_exits(tmp_path, signum):
    marker = tmp_path / "running"
    process = start_cli(fit_args(tmp_path, "--trainer.callbacks+=tests.lit_moe.recording_callbacks.TouchAtStep",
                                 f"--trainer.callbacks.path={marker}", "--trainer.callbacks.step=2",
                                 max_steps=10_000, **{"trainer.val_check_interval": "10000"}))
    _wait_for(marker, process)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output[-4000:]
    assert "Preempted at global step" in output
    checkpoint = torch.load(_checkpoints(tmp_path) / "last.ckpt", map_location="cpu", weights_only=True)
    assert 2 <= checkpoint["global_step"] < 10_000


def test_nonfinite_steps_are_skipped_then_the_run_stops_with_a_checkpoint(tmp_path):
    skip_once = run_cli(fit_args(tmp_path / "once", "--model", "tests.lit_moe.fault_injection.NaNInjectingModule",
                                 "--model.nan_batches=[2]", max_steps=5))
    assert skip_once.returncode == 0, describe(skip_once)
    events = read_events(next((tmp_path / "once" / "moe_tiny").glob("version_*")))
    assert max(e.value for e in events.Scalars("train/skipped_steps")) == 1
    assert all(e.value == e.value for e in events.Scalars("train/loss") if e.step != 2)  # no NaN elsewhere
    stops = run_cli(fit_args(tmp_path / "stop", "--model", "tests.lit_moe.fault_injection.NaNInjectingModule",
                             "--model.nan_batches=[2,3,4,5,6,7]", "--model.max_consecutive_nonfinite=3",
                             max_steps=50))
    assert stops.returncode == 1
    assert "3 consecutive steps had a non-finite loss or gradient" in stops.stderr
    assert "Traceback" not in stops.stderr
    checkpoint = torch.load(_checkpoints(tmp_path / "stop") / "nonfinite-stop.ckpt",
                            map_location="cpu", weights_only=True)
    # Skipped steps still count toward global_step (as with loss scaling): 2 good + 3 skipped - the last
    # one, which stops the run before it completes.
    assert checkpoint["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())


def test_checkpoint_of_another_model_config_is_refused_naming_the_keys(tmp_path):
    first = run_cli(fit_args(tmp_path, max_steps=2))
    assert first.returncode == 0, describe(first)
    other = run_cli(fit_args(tmp_path, "--ckpt_path", "last", max_steps=3,
                             **{"model.init_args.config.num_experts": "4", "model.init_args.config.n_layers": "3"}))
    assert other.returncode == 2, describe(other)
    assert "different model configuration" in other.stderr
    assert "model.blocks.2." in other.stderr and "w_gate_EDF" in other.stderr
    assert "num_experts: checkpoint 8 vs config 4" in other.stderr
    assert "Traceback" not in other.stderr


def test_simulated_two_node_run(tmp_path):
    port = 29500 + (int(time.time() * 1000) % 2000)
    agents = []
    for node_rank in range(2):
        launcher = ["torchrun", "--nnodes=2", "--nproc-per-node=1", f"--node-rank={node_rank}",
                    "--master-addr=127.0.0.1", f"--master-port={port}"]
        launcher = [__import__("sys").executable, "-m", "torch.distributed.run", *launcher[1:]]
        agents.append(start_cli(fit_args(tmp_path, trainer_config="ddp.yaml", max_steps=3,
                                         **{"trainer.devices": "1", "trainer.num_nodes": "2"}), launcher=launcher))
    try:
        outputs = [agent.communicate(timeout=240)[0] for agent in agents]
    except subprocess.TimeoutExpired:
        for agent in agents:
            agent.kill()
        raise
    for agent, output in zip(agents, outputs):
        assert agent.returncode == 0, output[-4000:]
    assert "max_steps=3` reached" in outputs[0]
    checkpoint = torch.load(_checkpoints(tmp_path) / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 3
