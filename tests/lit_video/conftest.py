"""Fixtures for the lit_video tests: tiny random components, offline hub, the repo root on sys.path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

from lit_video.components import ComponentsSpec, TinyComponentsConfig, build_components  # noqa: E402

REAL_CLIP = REPO_ROOT.parent / "shared" / "data" / "carphone_pristine.mp4"


@pytest.fixture
def tiny_components():
    components = build_components(ComponentsSpec(tiny=TinyComponentsConfig()))
    components.eval()
    return components


@pytest.fixture
def text(tiny_components):
    return tiny_components.encode_prompts(["a red square moving right"])


def small_latents(batch: int = 1, frames: int = 2, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 4, frames, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True)
def single_thread_torch():
    """One intra-op thread for these tiny models: as fast as two here, and immune to the OpenMP
    barrier stalls that multiply run time when other jobs share the 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
