"""Shared fixtures: which kernel backends run here, random op inputs, tolerances.

Triton kernels run under the interpreter when there is no GPU; the variable must be set before
triton is first imported.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from rasd_kernels import backends  # noqa: E402

KERNEL_BACKENDS = [b for b in ("cpu", "triton", "cuda") if backends.unavailable_reason(b) is None]


def device_for(backend: str) -> torch.device:
    """Where a backend's tensors live in the tests (Triton interprets on the CPU)."""
    if backend == "cuda" or (backend == "triton" and not backends.interpreting_triton()):
        return torch.device("cuda")
    return torch.device("cpu")


@pytest.fixture(params=KERNEL_BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def device(backend) -> torch.device:
    return device_for(backend)


@pytest.fixture(params=["reference", *KERNEL_BACKENDS])
def backend_or_reference(request) -> tuple[str, torch.device]:
    """(backend, device) for hand-checked cases, which the reference must pass too."""
    return request.param, device_for(request.param)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
