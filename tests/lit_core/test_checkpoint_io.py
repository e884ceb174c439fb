"""AtomicCheckpointIO: streamed saves (no second in-memory copy), the previous checkpoint kept."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from lit_core.checkpointing import AtomicCheckpointIO
from lit_core.checkpointing.checkpoint_io import previous_path
from tests.conftest import REPO_ROOT


def test_an_overwritten_checkpoint_is_kept_as_prev(tmp_path):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, target)
    assert not previous_path(target).exists()
    io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, target)
    io.save_checkpoint({"global_step": 3, "w": torch.zeros(3)}, target)
    assert previous_path(target) == tmp_path / "last.prev.ckpt"
    assert torch.load(target)["global_step"] == 3 and torch.load(tmp_path / "last.prev.ckpt")["global_step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "last.prev.ckpt"]
    AtomicCheckpointIO(keep_previous=False).save_checkpoint({"global_step": 4}, tmp_path / "other.ckpt")
    AtomicCheckpointIO(keep_previous=False).save_checkpoint({"global_step": 5}, tmp_path / "other.ckpt")
    assert not (tmp_path / "other.prev.ckpt").exists()


def test_peak_memory_of_a_save_stays_near_the_resident_size(tmp_path):
    """A 256 MB checkpoint (weights + AdamW moments) saved in a fresh process: the peak resident set
    during the save (VmHWM after resetting it) stays within 1.1x the resident set before + 64 MB.
    Serialising into a BytesIO first, as before, needs a whole second copy (+256 MB)."""
    result = subprocess.run([sys.executable, "benchmarks/checkpoint_save.py", "--child", "atomic_streamed",
                             "--megabytes", "256", "--folder", str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin",
                                                         "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    if "error" in numbers:
        pytest.skip(numbers["error"])
    assert numbers["file_mib"] > 250
    assert numbers["peak_mib"] <= 1.1 * numbers["before_mib"] + 64, numbers
