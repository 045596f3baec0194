"""Op `rasd::spline_maximum`: the largest value of each bias spline over the image.

coef [B, A, *nodes] float32 (cubic B-spline coefficients, every n >= 4); scalars [B, A, >= 2d]
float32 whose first 2d entries are the control-point spacing in voxels and the lattice offset
in node units, per axis (as for bias_field); size: the image's spatial shape. Returns [B, A]
float32: the maximum over POINTS_PER_SPACING (n - 3) + 1 points per axis spanning the image,
or a quarter of the largest magnitude if that is larger, at least 1e-12 (draw_appearance
divides the bias by it). Semantics: rasd_kernels.reference.spline_maximum.
"""

from __future__ import annotations

import torch

from .. import backends
from . import _checks


@torch.library.custom_op("rasd::spline_maximum", mutates_args=())
def _spline_maximum(coef: torch.Tensor, scalars: torch.Tensor, size: list[int],
                    backend: str) -> torch.Tensor:
    return backends.implementation(backend, "spline_maximum")(coef, scalars, tuple(size))


@_spline_maximum.register_fake
def _(coef, scalars, size, backend):
    return coef.new_empty(coef.shape[:2])


def check(coef, scalars, size) -> None:
    size = tuple(size)
    d = len(size)
    _checks.spatial("size", size)
    _checks.tensor("coef", coef, dtype=torch.float32, dim=2 + d)
    if min(coef.shape[2:]) < 4:
        raise ValueError(f"coef must have at least 4 nodes per axis, got {tuple(coef.shape)}")
    _checks.tensor("scalars", scalars, dtype=torch.float32, dim=3)
    if tuple(scalars.shape[:2]) != tuple(coef.shape[:2]) or scalars.shape[2] < 2 * d:
        raise ValueError(f"scalars must have shape [B, A, >= {2 * d}] with B, A = "
                         f"{tuple(coef.shape[:2])}, got {tuple(scalars.shape)}")
    _checks.same_device(coef=coef, scalars=scalars)


def spline_maximum(coef: torch.Tensor, scalars: torch.Tensor, size,
                   backend: str = "auto") -> torch.Tensor:
    """[B, A]: the maximum of each bias spline over the image of spatial shape `size`."""
    check(coef, scalars, size)
    return torch.ops.rasd.spline_maximum(coef, scalars, [int(n) for n in size],
                                         backends.resolve(backend, coef.device))
