"""The analysis tests run many small tensor ops; on a shared 2-core machine a second intra-op thread
costs more in synchronisation than it gains, so each test runs single-threaded (restored after)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def single_intra_op_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
