"""lit_core is neutral (imports neither product); the old import paths still work."""

from __future__ import annotations

import subprocess
import sys

import lit_core.checkpointing as core
import lit_core.errors as errors
import lit_moe.errors
import lit_moe.training
from lit_moe.training.checkpoint_io import AtomicCheckpointIO
from lit_video.errors import VideoInputError
from tests.conftest import REPO_ROOT


def test_lit_core_imports_neither_product():
    code = ("import sys, lit_core.cli, lit_core.checkpointing, lit_core.io, lit_core.errors; "
            "tops = {m.split('.')[0] for m in sys.modules}; "
            "print(sorted(tops & {'lit_moe', 'lit_video', 'kernels'}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_old_paths_are_the_moved_objects():
    assert lit_moe.training.AtomicCheckpointIO is core.AtomicCheckpointIO is AtomicCheckpointIO
    assert lit_moe.training.ExperimentCheckpoint is core.ExperimentCheckpoint
    assert lit_moe.training.PreemptionCheckpoint is core.PreemptionCheckpoint
    assert lit_moe.errors.UserInputError is errors.UserInputError
    assert issubclass(VideoInputError, errors.UserInputError) and VideoInputError.exit_code == 2
