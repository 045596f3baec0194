"""Reference of the spline_maximum op: the largest value of each bias spline over a lattice of
evaluation points, by dense separable contractions in float64.

The published bias is rescaled so that the maximum of the blurred field over the volume
equals the maximum of the pre-blur noise, sigma * E[max of V normals]; dividing the spline by
its own maximum over the volume reproduces that construction. The spline is evaluated on
P = POINTS_PER_SPACING * (n - 3) + 1 voxel positions spanning [0, N - 1] per axis, so at least
that many points per control-point spacing h (SynthesisConfig.bias_nodes_for gives
n - 3 > (N - 1) / h_min), by one small separable contraction per axis with the cubic B-spline
basis matrix [B, A, P, n]: no full-resolution pass, no host sync. (The maximum at the knots
alone overshot the published amplitude by 22 % at 64^3 and 11 % at 128^3, with a 19 % relative
spread at 64^3 where the published one has 6 %.) A field that is negative everywhere is scaled
by a quarter of its largest magnitude instead, so that its sign is never flipped.
"""

from __future__ import annotations

import torch

from .. import layout

# Evaluation points of the bias spline per control-point spacing when its maximum is taken.
# Near a high peak a smooth Gaussian field falls off as its autocorrelation, so sampling at
# spacing delta misses the peak by about d * (delta^2 / 12) / (2 l^2) relative, l = 0.84 h
# the Gaussian scale with the spline's half-correlation lag (0.99 h): 18 % in 3D at the knots
# alone (delta = h), 1.1 % at delta = h / 4.
POINTS_PER_SPACING = 4


def spline_maximum(coef: torch.Tensor, scalars: torch.Tensor, shape) -> torch.Tensor:
    """[B, A]: the maximum of each spline coef [B, A, *nodes] (scalars [B, A, >= 2d]: spacing,
    offset per axis) over its evaluation points, or a quarter of its largest magnitude if
    that is larger; at least 1e-12; in the dtype of coef."""
    dtype = coef.dtype
    coef, scalars = coef.double(), scalars.double()
    d = len(shape)
    lead = coef.shape[:2]
    # Contract the first remaining axis each time and append its P points last: after d
    # steps the axes are back in order, and every step is one batched matmul of a transposed
    # view (no copy of the operand).
    values = coef.reshape(-1, *coef.shape[2:])
    for a in range(d):
        n = coef.shape[2 + a]
        points = POINTS_PER_SPACING * (n - 3) + 1
        pos = torch.linspace(0.0, shape[a] - 1.0, points, dtype=coef.dtype, device=coef.device)
        spacing = scalars[..., layout.bias_spacing(d, a), None]
        offset = scalars[..., layout.bias_offset(d, a), None]
        t = pos / spacing + offset + 1.0                                      # [B, A, P]
        i = torch.floor(t)
        f = t - i
        weights = ((1 - f) ** 3 / 6, (3 * f ** 3 - 6 * f ** 2 + 4) / 6,
                   (-3 * f ** 3 + 3 * f ** 2 + 3 * f + 1) / 6, f ** 3 / 6)
        basis = torch.zeros(*t.shape, n, dtype=coef.dtype, device=coef.device)  # [B, A, P, n]
        for j, w in enumerate(weights):  # one index per row and call: no colliding adds
            basis.scatter_add_(-1, (i + j - 1).clamp(0, n - 1).long()[..., None], w[..., None])
        rest = values.shape[2:]
        flat = values.reshape(values.shape[0], n, -1).transpose(1, 2)        # [BA, rest, n]
        values = (flat @ basis.reshape(-1, points, n).transpose(1, 2)).reshape(
            values.shape[0], *rest, points)
    flat = values.reshape(*lead, -1)
    lo, hi = flat.amin(-1), flat.amax(-1)  # (torch.aminmax along a dim is 20x slower here)
    return torch.maximum(hi, 0.25 * torch.maximum(hi, -lo)).clamp_min(1e-12).to(dtype)
