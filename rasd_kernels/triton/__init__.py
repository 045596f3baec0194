"""Triton backend: every op as Triton kernels, on CUDA GPUs or under TRITON_INTERPRET=1, but
spline_maximum: a few small matrix products per batch, left to torch (its reference).

The interpreter (TRITON_INTERPRET=1, set before triton is imported) runs the same kernels on
CPU tensors; the tests use it where there is no GPU.
"""

from __future__ import annotations

from ._launch import interpreting

_INTERPRETING_AT_IMPORT = interpreting()

from .appearance import appearance  # noqa: E402
from .bias_field import bias_field  # noqa: E402
from .gmm_shapes import gmm_shapes  # noqa: E402
from .philox_fill import philox_fill  # noqa: E402
from ..reference.spline_maximum import spline_maximum  # noqa: E402

__all__ = ["appearance", "bias_field", "gmm_shapes", "philox_fill", "spline_maximum",
           "unavailable_reason"]


def unavailable_reason() -> str | None:
    """None if the kernels can run here (a CUDA device, or the interpreter), else why not."""
    if interpreting() != _INTERPRETING_AT_IMPORT:
        return ("TRITON_INTERPRET changed after rasd_kernels.triton was imported; set it before "
                "importing triton or rasd_kernels")
    if interpreting():
        return None
    import torch

    if not torch.cuda.is_available():
        return ("the triton backend needs a CUDA device (none found); on a CPU-only machine set "
                "TRITON_INTERPRET=1 before importing triton to run it under the interpreter")
    return None
