"""Fixtures for the lit_video tests: tiny random components, offline hub, one torch thread."""

from __future__ import annotations

import os

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

from lit_video.components import ComponentsSpec, TinyComponentsConfig, build_components  # noqa: E402


@pytest.fixture
def tiny_components():
    components = build_components(ComponentsSpec(tiny=TinyComponentsConfig()))
    components.eval()
    return components


@pytest.fixture
def text(tiny_components):
    return tiny_components.encode_prompts(["a red square moving right"])


@pytest.fixture(autouse=True)
def single_thread_torch():
    """One intra-op thread for these tiny models: as fast as two here, and immune to the OpenMP
    barrier stalls that multiply run time when other jobs share the 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
