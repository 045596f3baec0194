"""Reference of the bias field op: image *= exp(psi), psi a cubic B-spline, in float64."""

from __future__ import annotations

import torch

from .. import layout
from . import interp


def log_bias(coef: torch.Tensor, scalars: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """psi [*shape] of one (sample, appearance): coef [*nodes], scalars [>= 2d]."""
    d = len(shape)
    s = scalars.double()
    columns = layout.scalar_slices(d)
    return interp.bspline(coef.double(), interp.voxel_positions(shape),
                          s[columns["bias_spacing"]], s[columns["bias_offset"]])


def bias_field(image: torch.Tensor, coef: torch.Tensor, scalars: torch.Tensor) -> None:
    """image [B, A, *shape] *= exp(psi); scalars [B, A, >= 2d]: spacing (d), offset (d)."""
    shape = tuple(image.shape[2:])
    batch, apps = image.shape[:2]
    for b in range(batch):
        for a in range(apps):
            psi = log_bias(coef[b, a].cpu(), scalars[b, a].cpu(), shape)
            image[b, a] = (image[b, a].cpu().double() * torch.exp(psi)).to(image.dtype)
