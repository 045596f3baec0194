"""Reference of the appearance op (SPEC 3), in float64.

For sample b and appearance a (= view * C + channel), with scalars laid out as in
rasd_kernels.layout:
  x = mean[y] + std[y] * n1            intensity and per-label texture (n1 skipped when std = 0)
  x *= exp(psi)                        bias field
  x += noise_std * max|x| * n2         additive noise relative to the image range
  per axis W, H, D: x = blur(x), then x = resample(x) where the axis is acquired with a step
                                       (thick slices, low resolution; resample_axis below)
                                       separable Gaussian, radius round(3 sigma), edge replicate
  x = ((x - min) / (max - min + 1e-6)) ** gamma
  x = 0 where the label is 0, if the appearance clears its background
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


def resample_axis(x: torch.Tensor, axis: int, step: float, offset: float) -> torch.Tensor:
    """An acquisition along one axis: samples every `step` voxels from `offset` (values read
    linearly between voxels), then linear interpolation back to every voxel (beyond the first
    and last sample: their value). Step 1 with offset 0 returns x itself."""
    if step == 1.0 and offset == 0.0:
        return x
    n = x.shape[axis]
    o = min(float(offset), n - 1.0)
    count = int(math.floor((n - 1 - o) / step)) + 1
    where = [1] * x.dim()
    where[axis] = -1

    def lerp_along(values, position):
        low = torch.floor(position).clamp(max=values.shape[axis] - 1)
        frac = (position - low).reshape(where)
        high = (low + 1).clamp(max=values.shape[axis] - 1)
        return (values.index_select(axis, low.long()) * (1 - frac)
                + values.index_select(axis, high.long()) * frac)

    samples = lerp_along(x, o + step * torch.arange(count, dtype=torch.float64))
    back = ((torch.arange(n, dtype=torch.float64) - o) / step).clamp(0, count - 1)
    return lerp_along(samples, back)


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
        x = resample_axis(x, axis, float(s[layout.resample_step(d, axis)]),
                          float(s[layout.resample_offset(d, axis)]))
    lo, hi = x.min(), x.max()
    x = ((x - lo) / (hi - lo + NORMALISE_EPS)) ** s[layout.gamma(d)]
    if float(s[layout.clear_background(d)]) != 0.0:
        x = torch.where(y == 0, 0.0, x)
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
