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


# Random123 known-answer vectors of Philox4x32-10: counter, key -> output.
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_blob_params(shape, K: int, batch: int, g: torch.Generator) -> torch.Tensor:
    """Blob parameters [batch, K, blob_param_count(d)] as params.draw_anatomy makes them:
    centres inside the volume, positive definite precisions of a few voxels, log weights."""
    d = len(shape)
    size = torch.tensor(shape, dtype=torch.float32)
    centre = torch.rand(batch, K, d, generator=g) * (size - 1)
    a = torch.randn(batch, K, d, d, generator=g) / size.max()
    precision = a @ a.transpose(-1, -2) + torch.eye(d) / size.max() ** 2
    rows, cols = torch.triu_indices(d, d)
    log_w = torch.log(0.5 + 0.5 * torch.rand(batch, K, 1, generator=g))
    return torch.cat([centre, precision[..., rows, cols], log_w], -1)


# Labels may differ from the float64 reference only where its two best scores are closer than
# TIE_MARGIN (float32 interpolation of O(1) fields carries ~1e-6 error), and on at most
# MAX_TIE_FRACTION of the voxels.
TIE_MARGIN = 1e-4
MAX_TIE_FRACTION = 1e-3


def assert_labels_match(labels, fields, warps, field_nodes, warp_nodes, mode, border="edge"):
    """Equal to the reference argmax except at near-ties (few, each with a tiny margin)."""
    from rasd_kernels.reference.gmm_shapes import scores as reference_scores

    scores = reference_scores(fields.cpu(), warps.cpu(), field_nodes, warp_nodes,
                              tuple(labels.shape[1:]), mode, border)
    expected = scores.argmax(1)
    got = labels.cpu().long()
    differ = got != expected
    assert differ.float().mean() <= MAX_TIE_FRACTION, f"{int(differ.sum())} labels differ"
    if differ.any():
        best = scores.gather(1, expected.unsqueeze(1)).squeeze(1)
        chosen = scores.gather(1, got.unsqueeze(1)).squeeze(1)
        assert float((best - chosen)[differ].max()) < TIE_MARGIN
