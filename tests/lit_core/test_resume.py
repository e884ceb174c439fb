"""lit_core.checkpointing.resume: readable checkpoints, the fallback, version folders."""

from __future__ import annotations

import threading

import pytest
import torch

from lit_core.checkpointing import AtomicCheckpointIO
from lit_core.checkpointing.resume import (
    checkpoint_problem,
    claim_next_version,
    last_checkpoints,
    usable_checkpoint,
    version_of,
)
from lit_core.errors import UserInputError


def _save(path, step: int) -> None:
    AtomicCheckpointIO().save_checkpoint({"global_step": step, "w": torch.arange(4096, dtype=torch.float32)}, path)


def test_torn_and_bit_flipped_checkpoints_are_detected(tmp_path):
    good = tmp_path / "good.ckpt"
    _save(good, 1)
    assert checkpoint_problem(good) is None
    data = good.read_bytes()
    torn = tmp_path / "torn.ckpt"
    torn.write_bytes(data[: len(data) // 2])
    assert "truncated or not a torch checkpoint" in checkpoint_problem(torn)
    flipped = tmp_path / "flipped.ckpt"
    middle = data.index(bytes(torch.arange(4096, dtype=torch.float32)[2000:2002].numpy().tobytes()))
    flipped.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    assert "fails its CRC check" in checkpoint_problem(flipped)
    (tmp_path / "empty.ckpt").write_bytes(b"")
    assert checkpoint_problem(tmp_path / "empty.ckpt") == "an empty file"


def test_an_unreadable_last_falls_back_to_prev_with_one_warning(tmp_path, capsys):
    last = tmp_path / "last.ckpt"
    _save(last, 1)
    _save(last, 2)
    last.write_bytes(last.read_bytes()[:100])
    assert usable_checkpoint(last) == tmp_path / "last.prev.ckpt"
    assert capsys.readouterr().err.splitlines() == [
        f"warning: checkpoint {last} is unreadable (truncated or not a torch checkpoint: File is not a zip file); "
        f"resuming from the previous checkpoint {tmp_path / 'last.prev.ckpt'} instead"]
    (tmp_path / "last.prev.ckpt").unlink()
    with pytest.raises(UserInputError, match="there is no previous checkpoint .*last.prev.ckpt to fall back to"):
        usable_checkpoint(last)


def test_versions_are_claimed_once_even_by_concurrent_runs(tmp_path):
    (tmp_path / "version_0").mkdir()
    claimed = []
    threads = [threading.Thread(target=lambda: claimed.append(claim_next_version(tmp_path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == list(range(1, 9))


def test_last_is_the_newest_run_and_its_version_is_known(tmp_path):
    for version, step in ((0, 5), (2, 1), (1, 9)):
        _save(tmp_path / f"version_{version}" / "checkpoints" / "last.ckpt", step)
    newest = last_checkpoints(tmp_path)[-1]
    assert newest == tmp_path / "version_1" / "checkpoints" / "last.ckpt"
    assert version_of(newest, tmp_path) == 1 and version_of(tmp_path / "elsewhere.ckpt", tmp_path) is None
