"""The CPU backend: OpenMP C++ kernels of rasd_kernels._C (csrc/cpu/).

The op layer (rasd_kernels.ops) has validated dtypes, shapes, contiguity and devices; this
module hands data pointers and sizes to the compiled module, which writes the outputs in place
and releases the GIL while it runs. The compiled module includes no torch header, so it works
with any torch version.
"""

from __future__ import annotations

import torch

from ..reference.spline_maximum import POINTS_PER_SPACING

try:
    from .. import _C
except ImportError as exc:  # not built: the backend reports why instead of failing on import
    _C = None
    _IMPORT_ERROR = str(exc)
else:
    _IMPORT_ERROR = None


def unavailable_reason() -> str | None:
    """None when the compiled module imports, else why it does not."""
    if _C is None:
        return (f"the compiled module rasd_kernels._C cannot be imported ({_IMPORT_ERROR}); "
                "build it with `pip install .`")
    return None


def set_num_threads(n: int) -> None:
    """Threads of every CPU kernel call (0 restores the OpenMP default, OMP_NUM_THREADS)."""
    _C.set_num_threads(int(n))


def get_num_threads() -> int:
    return int(_C.get_num_threads())


def openmp_usable() -> bool:
    """False in a forked child process, where the kernels run on threads of their own."""
    return bool(_C.openmp_usable())


def last_team_size() -> int:
    """How many threads the calling thread's most recent parallel kernel loop ran on (a check
    that the loops really run in parallel)."""
    return int(_C.last_team_size())


def _cpu(*tensors: torch.Tensor) -> None:
    for t in tensors:
        if t.device.type != "cpu":
            raise ValueError(f"backend 'cpu' needs CPU tensors, got a tensor on {t.device}")


def philox_fill(out, sample_index, seed: int, stream: int, distribution: str) -> None:
    _cpu(out, sample_index)
    if out.numel() == 0:
        return
    _C.philox_fill(out.data_ptr(), out.shape[0], out[0].numel(), sample_index.data_ptr(),
                   seed, stream, distribution == "normal")


def gmm_shapes(labels, fields, warps, field_nodes, warp_nodes, mode: str,
               border: str = "edge") -> None:
    _cpu(labels, fields, warps)
    _C.gmm_shapes(labels.data_ptr(), fields.data_ptr(), warps.data_ptr(), labels.shape[0],
                  fields.shape[1], list(labels.shape[1:]), list(field_nodes), list(warp_nodes),
                  mode == "blobs", border == "zeros")


def bias_field(image, coef, scalars) -> None:
    _cpu(image, coef, scalars)
    _C.bias_field(image.data_ptr(), coef.data_ptr(), scalars.data_ptr(), image.shape[0],
                  image.shape[1], list(image.shape[2:]), list(coef.shape[2:]),
                  scalars.shape[2])


def spline_maximum(coef, scalars, size) -> torch.Tensor:
    _cpu(coef, scalars)
    out = torch.empty(coef.shape[:2], dtype=torch.float32)
    _C.spline_maximum(coef.data_ptr(), scalars.data_ptr(), out.numel(), scalars.shape[2],
                      list(size), list(coef.shape[2:]), POINTS_PER_SPACING, out.data_ptr())
    return out


def appearance(image, labels, label_stats, bias_coef, scalars, stats, sample_index,
               seed: int) -> None:
    _cpu(image, labels, label_stats, bias_coef, scalars, stats, sample_index)
    _C.appearance(image.data_ptr(), labels.data_ptr(), label_stats.data_ptr(),
                  bias_coef.data_ptr(), scalars.data_ptr(), stats.data_ptr(),
                  sample_index.data_ptr(), seed, image.shape[0], image.shape[1],
                  label_stats.shape[2], list(image.shape[2:]), list(bias_coef.shape[2:]))
