"""Readable float64 interpolation on one coarse grid: the oracle of csrc/common/interp.h."""

from __future__ import annotations

import itertools
import math

import torch


def voxel_positions(shape: tuple[int, ...], dtype=torch.float64) -> torch.Tensor:
    """[*shape, d] integer voxel coordinates (D, H, W order)."""
    axes = [torch.arange(n, dtype=dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def _strides(nodes) -> list[int]:
    return [math.prod(nodes[a + 1:]) for a in range(len(nodes))]


def linear(grid: torch.Tensor, pos: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Multilinear interpolation of grid [n_0, ..., n_{d-1}] at pos [..., d].

    Nodes span the volume: node i of an axis of N voxels sits at i * (N - 1) / (n - 1)
    (align_corners=True). Positions are clamped to [0, N - 1] first, so the interpolant takes
    its border value outside the volume.
    """
    nodes = grid.shape
    index, frac = [], []
    for a, (n, size) in enumerate(zip(nodes, shape)):
        t = pos[..., a].clamp(0, size - 1) * ((n - 1) / (size - 1))
        i0 = torch.clamp(torch.floor(t), max=n - 2)
        index.append(i0.long())
        frac.append(t - i0)
    flat, strides = grid.reshape(-1), _strides(nodes)
    out = torch.zeros(pos.shape[:-1], dtype=torch.float64)
    for corner in itertools.product((0, 1), repeat=len(nodes)):
        weight, offset = 1.0, 0
        for a, c in enumerate(corner):
            weight = weight * (frac[a] if c else 1.0 - frac[a])
            offset = offset + (index[a] + c) * strides[a]
        out += weight * flat[offset].double()
    return out


def bspline_weights(f: torch.Tensor) -> list[torch.Tensor]:
    """Cubic B-spline weights of nodes i-1, i, i+1, i+2 at fraction f in [0, 1)."""
    f2, f3 = f * f, f * f * f
    return [(1 - f) ** 3 / 6, (3 * f3 - 6 * f2 + 4) / 6, (-3 * f3 + 3 * f2 + 3 * f + 1) / 6,
            f3 / 6]


def bspline(coef: torch.Tensor, pos: torch.Tensor, spacing, offset) -> torch.Tensor:
    """Cubic B-spline with coefficients coef [n_0, ..., n_{d-1}] at pos [..., d].

    Control point j of axis a sits at voxel position (j - 1 - offset_a) * spacing_a, so
    t_a = p_a / spacing_a + offset_a + 1 and the four nodes floor(t_a) - 1 .. floor(t_a) + 2
    carry weight. Node indices are clamped into the lattice (never needed when it was sized by
    SynthesisConfig.bias_nodes_for; kept so that no index can leave the buffer).
    """
    nodes = coef.shape
    index, weights = [], []
    for a in range(len(nodes)):
        t = pos[..., a] / float(spacing[a]) + float(offset[a]) + 1.0
        i = torch.floor(t)
        index.append(i.long())
        weights.append(bspline_weights(t - i))
    flat, strides = coef.reshape(-1), _strides(nodes)
    out = torch.zeros(pos.shape[:-1], dtype=torch.float64)
    for taps in itertools.product(range(4), repeat=len(nodes)):
        weight, off = 1.0, 0
        for a, j in enumerate(taps):
            weight = weight * weights[a][j]
            off = off + (index[a] + j - 1).clamp(0, nodes[a] - 1) * strides[a]
        out += weight * flat[off].double()
    return out
