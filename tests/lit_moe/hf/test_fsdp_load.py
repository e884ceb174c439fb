"""FSDP2 (2 CPU processes, gloo) loads an imported model into its shards and matches one process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
import torch

from lit_moe.hf import load_hf
from tests.conftest import REPO_ROOT
from tests.lit_moe.distributed.launch import child_env
from tests.lit_moe.hf.helpers import save_random_hf

pytest.importorskip("transformers")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_fsdp2_load_matches_single_process(tmp_path):
    save_random_hf("qwen2_moe", tmp_path / "src")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), str(REPO_ROOT / "tests/lit_moe/hf/fsdp_load_worker.py"), str(tmp_path / "src"),
               str(tmp_path)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=child_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the launcher and both workers
        output, _ = process.communicate()
    assert process.returncode == 0, output[-4000:]
    saved = torch.load(tmp_path / "rank0.pt")
    assert saved["sharded"]
    single = load_hf(tmp_path / "src").eval()
    tokens = torch.arange(2 * 24).reshape(2, 24) % single.config.vocab_size
    with torch.no_grad():
        expected = single(tokens).logits_BSV
    torch.testing.assert_close(saved["logits"], expected, rtol=1e-5, atol=1e-5)
    exported = load_hf(tmp_path / "export_rank0").state_dict()
    for key, value in single.state_dict().items():
        assert torch.equal(exported[key], value), key
