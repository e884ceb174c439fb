"""configs/trainer/ddp.yaml composes with the video configs: 2 CPU processes (gloo) train the tiny
recipe a few steps and end with identical LoRA weights that moved from their zero init. Runs
``cli.py`` in a child process with a timeout (never DDP inside the pytest process)."""

import os
import subprocess
import sys

import torch

from tests.lit_video.helpers import REPO_ROOT


def test_two_rank_ddp_fit_keeps_lora_identical_on_both_ranks(tmp_path):
    overlay = tmp_path / "callbacks.yaml"
    overlay.write_text(f"""trainer:
  callbacks:
    - class_path: lit_video.callbacks.ExportLoRA
    - class_path: tests.lit_video.distributed.rank_lora.SaveRankLoRA
      init_args:
        folder: {tmp_path / 'ranks'}
""")
    args = ["fit", "--config", "configs/video/tiny.yaml", "--config", "configs/trainer/ddp.yaml",
            "--config", str(overlay), "--trainer.accelerator", "cpu", "--trainer.devices", "2",
            "--trainer.max_steps", "3", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_checkpointing", "false", "--trainer.default_root_dir", str(tmp_path),
            "--trainer.logger.init_args.save_dir", str(tmp_path), "--model.init_args.lora_rank", "4",
            "--data.init_args.num_frames", "4", "--data.init_args.height", "32", "--data.init_args.width", "32",
            "--data.init_args.generated_clip_dir", str(tmp_path / "clip")]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
    result = subprocess.run([sys.executable, "cli.py", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=420)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    rank0, rank1 = (torch.load(tmp_path / "ranks" / f"rank{r}.pt") for r in (0, 1))
    assert rank0["world_size"] == rank1["world_size"] == 2 and rank0["step"] == rank1["step"] == 3
    assert rank0["state"].keys() == rank1["state"].keys() and rank0["state"]
    for name in rank0["state"]:
        assert torch.equal(rank0["state"][name], rank1["state"][name]), f"{name} differs between ranks"
    lora_b = [t for n, t in rank0["state"].items() if ".lora_B." in n]
    assert lora_b and all(t.abs().sum() > 0 for t in lora_b)  # trained: B left its zero init
    assert list(tmp_path.glob("tiny/version_*/lora/pytorch_lora_weights.safetensors"))  # rank 0 exported
