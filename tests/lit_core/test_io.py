"""lit_core.io.atomic_write: the one crash-safe writer."""

from __future__ import annotations

import os

import pytest
import torch

from lit_core.io import atomic_write, temporary_path


def test_writes_bytes_text_and_streams_through_a_writer(tmp_path):
    atomic_write(tmp_path / "sub" / "a.bin", b"\x00\x01")
    atomic_write(tmp_path / "b.txt", "héllo\n")
    tensor = torch.arange(10)
    atomic_write(tmp_path / "c.pt", lambda handle: torch.save({"x": tensor}, handle))
    assert (tmp_path / "sub" / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo\n"
    assert torch.equal(torch.load(tmp_path / "c.pt")["x"], tensor)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt", "c.pt", "sub"]  # no temporary left


def test_a_failing_writer_keeps_the_previous_file(tmp_path):
    target = tmp_path / "model.ckpt"
    atomic_write(target, b"good")

    def half_then_fail(handle):
        handle.write(b"to")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"good"
    assert not temporary_path(target).exists()


def test_temporary_file_is_unique_per_process_and_beside_the_target(tmp_path):
    temporary = temporary_path(tmp_path / "tok.json")
    assert temporary.parent == tmp_path and str(os.getpid()) in temporary.name
