"""Op `rasd::bias_field`: image *= exp(psi), psi a cubic B-spline of coarse control points.

image [B, A, *S] float32 (in place); coef [B, A, *nodes] float32 (log-bias spline
coefficients, amplitude included); scalars [B, A, >= 2d] float32 whose first 2d entries are the
control-point spacing in voxels and the lattice offset in node units, per axis (the appearance
scalars layout starts the same way). Semantics: rasd_kernels.reference.bias_field.
"""

from __future__ import annotations

import torch

from .. import backends
from . import _checks


@torch.library.custom_op("rasd::bias_field", mutates_args=("image",))
def _bias_field(image: torch.Tensor, coef: torch.Tensor, scalars: torch.Tensor,
                backend: str) -> None:
    backends.implementation(backend, "bias_field")(image, coef, scalars)


@_bias_field.register_fake
def _(image, coef, scalars, backend) -> None:
    return None


def check(image, coef, scalars) -> None:
    _checks.tensor("image", image, dtype=torch.float32, dim=(4, 5))
    size = tuple(image.shape[2:])
    d = len(size)
    _checks.spatial("image spatial shape", size)
    _checks.tensor("coef", coef, dtype=torch.float32, dim=2 + d)
    if tuple(coef.shape[:2]) != tuple(image.shape[:2]) or min(coef.shape[2:]) < 4:
        raise ValueError(f"coef must have shape [B, A, n_0, .., n_{d - 1}] with B, A = "
                         f"{tuple(image.shape[:2])} and every n >= 4, got {tuple(coef.shape)}")
    _checks.tensor("scalars", scalars, dtype=torch.float32, dim=3)
    if tuple(scalars.shape[:2]) != tuple(image.shape[:2]) or scalars.shape[2] < 2 * d:
        raise ValueError(f"scalars must have shape [B, A, >= {2 * d}] with B, A = "
                         f"{tuple(image.shape[:2])}, got {tuple(scalars.shape)}")
    _checks.same_device(image=image, coef=coef, scalars=scalars)


def bias_field(image: torch.Tensor, coef: torch.Tensor, scalars: torch.Tensor,
               backend: str = "auto") -> torch.Tensor:
    """Multiply `image` in place by the bias field and return it."""
    check(image, coef, scalars)
    torch.ops.rasd.bias_field(image, coef, scalars, backends.resolve(backend, image.device))
    return image
