"""Reference of the appearance op (SPEC 3), in float64.

For sample b and appearance a (= view * C + channel), with scalars laid out as in
rasd_kernels.layout:
  x = mean[y] + std[y] * n1            intensity and per-label texture (n1 skipped when std = 0)
  x *= exp(psi)                        bias field
  x += noise_std * max|x| * n2         additive noise relative to the image range
  x = blur_D(blur_H(blur_W(x)))        separable Gaussian, radius round(3 sigma), edge replicate
  x = ((x - min) / (max - min + 1e-6)) ** gamma
stats[b, a] = (max|x| before noise, min after blur, max after blur, 0).
"""

from __future__ import annotations

import math

import torch

from .. import layout, streams
from . import philox
from .bias_field import log_bias

NORMALISE_EPS = layout.NORMALISE_EPS


def gaussian_taps(sigma: float) -> torch.Tensor:
    """Normalised taps of radius floor(3 sigma + 0.5); sigma = 0 gives the identity."""
    radius = int(math.floor(3.0 * sigma + 0.5))
    if radius == 0:
        return torch.ones(1, dtype=torch.float64)
    i = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (i / sigma) ** 2)
    return taps / taps.sum()


def blur_axis(x: torch.Tensor, axis: int, sigma: float) -> torch.Tensor:
    """Convolve along one axis with edge-replicating borders."""
    taps = gaussian_taps(sigma)
    radius, size = (len(taps) - 1) // 2, x.shape[axis]
    out = torch.zeros_like(x)
    for j, w in enumerate(taps):
        idx = (torch.arange(size) + j - radius).clamp(0, size - 1)
        out += w * x.index_select(axis, idx)
    return out


def voxel_noise(seed: int, sample: int, stream: int, app: int, shape) -> torch.Tensor:
    voxels = math.prod(shape)
    element = app * voxels + torch.arange(voxels, dtype=torch.int64)
    return philox.normal(seed, torch.tensor(sample), stream, element).reshape(shape)


def appearance_one(labels, label_stats, coef, scalars, seed: int, sample: int, app: int):
    """(image [*shape] float64, stats [4]) of one sample and appearance."""
    shape = tuple(labels.shape)
    d = len(shape)
    s = scalars.double()
    mean = label_stats[:, layout.LABEL_MEAN].double()
    std = label_stats[:, layout.LABEL_STD].double()
    y = labels.long()
    x = mean[y]
    if bool((std != 0).any()):
        x = x + std[y] * voxel_noise(seed, sample, streams.TEXTURE_NOISE, app, shape)
    x = x * torch.exp(log_bias(coef, s, shape))
    max_abs = x.abs().max()
    x = x + s[layout.noise_std(d)] * max_abs * voxel_noise(seed, sample, streams.IMAGE_NOISE, app, shape)
    for axis in reversed(range(d)):
        x = blur_axis(x, axis, float(s[layout.blur_sigma(d, axis)]))
    lo, hi = x.min(), x.max()
    x = ((x - lo) / (hi - lo + NORMALISE_EPS)) ** s[layout.gamma(d)]
    stats = torch.zeros(layout.STAT_COUNT, dtype=torch.float64)
    stats[layout.STAT_MAX_ABS], stats[layout.STAT_LO], stats[layout.STAT_HI] = max_abs, lo, hi
    return x, stats


def appearance(image, labels, label_stats, bias_coef, scalars, stats, sample_index,
               seed: int) -> None:
    """Fill image [B, A, *shape] and stats [B, A, 4] (see module docstring)."""
    batch, apps = image.shape[:2]
    for b in range(batch):
        for a in range(apps):
            x, st = appearance_one(labels[b].cpu(), label_stats[b, a].cpu(), bias_coef[b, a].cpu(),
                                   scalars[b, a].cpu(), seed, int(sample_index[b]), a)
            image[b, a] = x.to(image.dtype)
            stats[b, a] = st.to(stats.dtype)
