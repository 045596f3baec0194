"""Fine-tuning augmentations of a batch (image [B, C, *S] in [0, 1], label [B, *S]), 2D and 3D.

    affine       random rotation (+-15 degrees; in 3D about each axis), isotropic zoom drawn
                 from `scale_range` (< 1 shrinks the anatomy), shift +-5 %, left-right flip,
                 then an intensity gamma drawn from `gamma_range`; labels follow by nearest
                 neighbour, the image bilinearly, zeros fill what comes in from outside.
    flip-rot90   a flip of each axis (probability 1/2 each) and a rotation by a multiple of 90
                 degrees (in 3D in one of the three planes): exact, no resampling, no
                 intensity change.
    none         the batch as it is.

Everything random comes from the generator passed in, so a seed replays a run.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

AUGMENTS = ("affine", "flip-rot90", "none")


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def affine_2d(x, y, gen, scale_range=(0.6, 1.2), gamma_range=(0.7, 1.4)):
    """`affine` of 2D batches (the draws and their order are those of the first protocol, so
    its runs replay exactly)."""
    n = x.shape[0]
    angle, scale = _uniform(n, -math.pi / 12, math.pi / 12, gen), _uniform(n, *scale_range,
                                                                           gen)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.cos(angle) / scale * flip
    theta[:, 0, 1] = -torch.sin(angle) / scale
    theta[:, 1, 0] = torch.sin(angle) / scale * flip
    theta[:, 1, 1] = torch.cos(angle) / scale
    theta[:, :, 2] = torch.stack([_uniform(n, -0.1, 0.1, gen), _uniform(n, -0.1, 0.1, gen)], 1)
    return _resample(x, y, theta, _uniform(n, *gamma_range, gen))


def _rotation_3d(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """[n, 3, 3] rotations R_z(c) R_y(b) R_x(a) in grid coordinates (x, y, z)."""
    n = a.shape[0]
    out = torch.eye(3).repeat(n, 1, 1)
    for angle, (i, j) in ((a, (1, 2)), (b, (0, 2)), (c, (0, 1))):
        r = torch.eye(3).repeat(n, 1, 1)
        r[:, i, i], r[:, j, j] = torch.cos(angle), torch.cos(angle)
        r[:, i, j], r[:, j, i] = -torch.sin(angle), torch.sin(angle)
        out = r @ out
    return out


def affine_3d(x, y, gen, scale_range=(0.6, 1.2), gamma_range=(0.7, 1.4)):
    """`affine` of 3D batches [B, C, D, H, W]; the left-right axis is W (grid x)."""
    n = x.shape[0]
    a, b, c = (_uniform(n, -math.pi / 12, math.pi / 12, gen) for _ in range(3))
    scale = _uniform(n, *scale_range, gen)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 3, 4)
    # Output grid point p samples the input at R (F p) / scale + t, F flipping x.
    theta[:, :, :3] = _rotation_3d(a, b, c) / scale[:, None, None]
    theta[:, :, 0] *= flip[:, None]
    theta[:, :, 3] = torch.stack([_uniform(n, -0.1, 0.1, gen) for _ in range(3)], 1)
    return _resample(x, y, theta, _uniform(n, *gamma_range, gen))


def _resample(x, y, theta, gamma):
    theta = theta.to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = F.grid_sample(y[:, None].float(), grid, mode="nearest", padding_mode="zeros",
                      align_corners=False)[:, 0].long()
    gamma = gamma.to(x.device).view(-1, *([1] * (x.dim() - 1)))
    return x.clamp(0.0, 1.0) ** gamma, y


def flip_rot90(x, y, gen):
    """A random flip of each spatial axis and a random multiple of 90 degrees in one plane
    (2D: the image plane; 3D: one of the three, drawn). Rotations by 90 or 270 degrees need
    the plane's two sizes equal; otherwise only 0 or 180 degrees are drawn."""
    dims = x.dim() - 2
    planes = [(0, 1)] if dims == 2 else [(0, 1), (0, 2), (1, 2)]
    xs, ys = [], []
    for i in range(x.shape[0]):
        xi, yi = x[i], y[i]                       # [C, *S], [*S]
        flips = torch.rand(dims, generator=gen) < 0.5
        axes = [d for d in range(dims) if flips[d]]
        if axes:
            xi, yi = xi.flip([d + 1 for d in axes]), yi.flip(axes)
        p, q = planes[int(torch.randint(len(planes), (1,), generator=gen))]
        turns = int(torch.randint(4, (1,), generator=gen))
        if yi.shape[p] != yi.shape[q]:
            turns = 2 * (turns % 2)
        xs.append(torch.rot90(xi, turns, (p + 1, q + 1)))
        ys.append(torch.rot90(yi, turns, (p, q)))
    return torch.stack(xs), torch.stack(ys)


def apply(kind: str, x, y, gen, *, scale_range=(0.6, 1.2), gamma_range=(0.7, 1.4)):
    """Augment a batch with `kind` (one of AUGMENTS)."""
    if kind == "none":
        return x, y
    if kind == "flip-rot90":
        return flip_rot90(x, y, gen)
    if kind == "affine":
        f = affine_2d if x.dim() == 4 else affine_3d
        return f(x, y, gen, scale_range, gamma_range)
    raise ValueError(f"augment must be one of {AUGMENTS}, got {kind!r}")
