"""Kernel tests run the Triton kernels through the interpreter when no GPU is present.

TRITON_INTERPRET must be set before triton compiles anything, i.e. before ``kernels`` is imported.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
