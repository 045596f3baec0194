"""Triton appearance: labels -> image, in place, in four (2D) or five (3D) passes.

1. intensity: x = mean[y] + std[y] * n1, x *= exp(psi) (spline evaluated per voxel), store,
   atomic max of |x| into stats[.., 0] (flat tiles of BLOCK voxels);
2. noise + blur along W: x += noise_std * max|x| * n2, then the W blur (a program owns whole
   rows: it stores x, synchronises, reads the taps back, synchronises, stores the result),
   then the W acquisition resampling where it is on (the same way, four taps per voxel);
3. blur and resampling along H (and 4. along D), a program owning whole lines along the axis
   for a block of consecutive lines; the last axis also reduces min and max into
   stats[.., 1:3] by atomics;
5. normalise and gamma, pointwise; 0 where the label is 0 if the appearance clears its
   background.
No full-resolution scratch: every pass reads and writes `image` itself.
Semantics: rasd_kernels.reference.appearance.
"""

import math

import triton
import triton.language as tl

from .. import layout, streams
from . import _launch, philox
from ._launch import flat_block, pow2
from .bias_field import launch_shape, log_bias, voxel_position

NORMALISE_EPS = tl.constexpr(layout.NORMALISE_EPS)
# Columns of label_stats [.., K, LABEL_STATS] and stats [.., STATS] (rasd_kernels.layout).
LABEL_STATS = tl.constexpr(layout.LABEL_STATS)
LABEL_MEAN = tl.constexpr(layout.LABEL_MEAN)
LABEL_STD = tl.constexpr(layout.LABEL_STD)
STATS = tl.constexpr(layout.STAT_COUNT)
MAX_ABS = tl.constexpr(layout.STAT_MAX_ABS)
LO = tl.constexpr(layout.STAT_LO)
HI = tl.constexpr(layout.STAT_HI)
TEXTURE_NOISE = tl.constexpr(streams.TEXTURE_NOISE)
IMAGE_NOISE = tl.constexpr(streams.IMAGE_NOISE)


@triton.jit
def _init_stats_kernel(stats_ptr, count, BLOCK: tl.constexpr):
    """stats [N, STATS] = (0, +inf, -inf, 0): identities of the atomic max|x|, min and max."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    col = i % STATS
    value = tl.where(col == LO, float("inf"), tl.where(col == HI, float("-inf"), 0.0))
    tl.store(stats_ptr + i, value, mask=i < count)


@triton.jit(do_not_specialize=["seed"])
def _intensity_kernel(image_ptr, labels_ptr, label_stats_ptr, coef_ptr, scalars_ptr, stats_ptr,
                      sample_ptr, seed, apps, num_labels, H, W, voxels, tiles, nd, nh, nw,
                      scalar_stride, DIM: tl.constexpr, BLOCK: tl.constexpr,
                      LABELS: tl.constexpr):
    pid = tl.program_id(0)
    image = pid // tiles                       # flat (sample, appearance)
    b = image // apps
    v = (pid % tiles) * BLOCK + tl.arange(0, BLOCK)
    inside = v < voxels
    y = tl.load(labels_ptr + b.to(tl.int64) * voxels + v, mask=inside, other=0).to(tl.int32)
    table = label_stats_ptr + image * (LABEL_STATS * num_labels)
    x = tl.load(table + LABEL_STATS * y + LABEL_MEAN)
    # Texture noise only where some label has a texture std (the published default has none).
    k = tl.arange(0, LABELS)
    stds = tl.load(table + LABEL_STATS * k + LABEL_STD, mask=k < num_labels, other=0.0)
    if tl.max(tl.abs(stds), axis=0) > 0.0:
        element = (image % apps).to(tl.int64) * voxels + v
        n1 = philox.normal_at(seed, tl.load(sample_ptr + b), TEXTURE_NOISE, element)
        x += tl.load(table + LABEL_STATS * y + LABEL_STD) * n1
    pd, ph, pw = voxel_position(v, voxels, H, W)
    psi = log_bias(coef_ptr + image.to(tl.int64) * (nd * nh * nw),
                   scalars_ptr + image * scalar_stride, pd, ph, pw, nd, nh, nw, DIM)
    x = x * tl.exp(psi)
    tl.store(image_ptr + image.to(tl.int64) * voxels + v, x, mask=inside)
    tl.atomic_max(stats_ptr + image * STATS + MAX_ABS,
                  tl.max(tl.where(inside, tl.abs(x), 0.0), axis=0), sem="relaxed")


@triton.jit
def _resample_taps(n, step, offset, i):
    """The four (index, weight) taps of output i of an axis of n voxels resampled every
    `step` voxels from `offset` (csrc/common/resample.h), computed in float64."""
    step = step.to(tl.float64)
    o = tl.minimum(offset.to(tl.float64), (n - 1).to(tl.float64))
    count = tl.floor(((n - 1).to(tl.float64) - o) / step).to(tl.int32) + 1
    u = tl.minimum(tl.maximum((i.to(tl.float64) - o) / step, 0.0), (count - 1).to(tl.float64))
    j = tl.minimum(tl.floor(u).to(tl.int32), tl.maximum(count - 2, 0))
    f = tl.where(count > 1, u - j.to(tl.float64), 0.0)
    at0 = o + tl.minimum(j, count - 1).to(tl.float64) * step
    at1 = o + tl.minimum(j + 1, count - 1).to(tl.float64) * step
    m0 = tl.minimum(tl.floor(at0).to(tl.int32), n - 1)
    m1 = tl.minimum(tl.floor(at1).to(tl.int32), n - 1)
    g0 = at0 - m0.to(tl.float64)
    g1 = at1 - m1.to(tl.float64)
    return (m0, ((1.0 - f) * (1.0 - g0)).to(tl.float32),
            tl.minimum(m0 + 1, n - 1), ((1.0 - f) * g0).to(tl.float32),
            m1, (f * (1.0 - g1)).to(tl.float32),
            tl.minimum(m1 + 1, n - 1), (f * g1).to(tl.float32))


@triton.jit
def _resample_gather(base, stride, n, step, offset, i, mask):
    """Output i of the resampling of lines of n voxels whose element k sits at
    base + k * stride (the caller has published them and synchronised)."""
    i0, w0, i1, w1, i2, w2, i3, w3 = _resample_taps(n, step, offset, i)
    return (w0 * tl.load(base + i0 * stride, mask=mask, other=0.0)
            + w1 * tl.load(base + i1 * stride, mask=mask, other=0.0)
            + w2 * tl.load(base + i2 * stride, mask=mask, other=0.0)
            + w3 * tl.load(base + i3 * stride, mask=mask, other=0.0))


@triton.jit
def _radius(sigma):
    """floor(3 sigma + 0.5) in float64, as the reference rounds it."""
    return tl.floor(sigma.to(tl.float64) * 3.0 + 0.5).to(tl.int32)


@triton.jit(do_not_specialize=["seed"])
def _noise_blur_w_kernel(image_ptr, stats_ptr, scalars_ptr, sample_ptr, seed, apps, rows, W,
                         voxels, tiles, scalar_stride, noise_col, sigma_col, step_col,
                         offset_col, ROWS: tl.constexpr, WP: tl.constexpr):
    pid = tl.program_id(0)
    image = pid // tiles
    b = image // apps
    r = (pid % tiles) * ROWS + tl.arange(0, ROWS)[:, None]
    w = tl.arange(0, WP)[None, :]
    mask = (r < rows) & (w < W)
    row_base = image.to(tl.int64) * voxels + r * W
    x = tl.load(image_ptr + row_base + w, mask=mask, other=0.0)
    scalars = scalars_ptr + image * scalar_stride
    amplitude = tl.load(scalars + noise_col) * tl.load(stats_ptr + image * STATS + MAX_ABS)
    element = (image % apps).to(tl.int64) * voxels + r * W + w
    x += amplitude * philox.normal_at(seed, tl.load(sample_ptr + b), IMAGE_NOISE, element)
    sigma = tl.load(scalars + sigma_col)
    radius = _radius(sigma)
    if radius > 0:
        # The program owns whole rows: publish x, then read the taps back (edge replicate).
        tl.store(image_ptr + row_base + w, x, mask=mask)
        tl.debug_barrier()
        acc = tl.zeros([ROWS, WP], tl.float32)
        norm = 0.0
        for t in range(-radius, radius + 1):
            tap = tl.exp(-0.5 * (t / sigma) * (t / sigma))
            src = tl.minimum(tl.maximum(w + t, 0), W - 1)
            acc += tap * tl.load(image_ptr + row_base + src, mask=mask, other=0.0)
            norm += tap
        tl.debug_barrier()                      # every tap read before any row is overwritten
        x = acc / norm
    step, offset = tl.load(scalars + step_col), tl.load(scalars + offset_col)
    if (step != 1.0) | (offset != 0.0):         # the acquisition resampling along W
        tl.store(image_ptr + row_base + w, x, mask=mask)
        tl.debug_barrier()
        x = _resample_gather(image_ptr + row_base, 1, W, step, offset, w, mask)
        tl.debug_barrier()
    tl.store(image_ptr + row_base + w, x, mask=mask)


@triton.jit
def _blur_lines_kernel(image_ptr, stats_ptr, scalars_ptr, lines, L, S, voxels, tiles,
                       scalar_stride, sigma_col, step_col, offset_col, LAST: tl.constexpr,
                       LP: tl.constexpr, LINES: tl.constexpr):
    """Blur along an axis of L voxels and stride S: line j starts at (j // S) * L * S + j % S.

    Tile [LP, LINES]: whole lines (axis 0) times consecutive lines (axis 1, contiguous in
    memory), so loads and stores are coalesced along W.
    """
    pid = tl.program_id(0)
    image = pid // tiles
    j = (pid % tiles) * LINES + tl.arange(0, LINES)[None, :]
    i = tl.arange(0, LP)[:, None]
    mask = (j < lines) & (i < L)
    base = image.to(tl.int64) * voxels + (j // S) * (L * S) + j % S
    sigma = tl.load(scalars_ptr + image * scalar_stride + sigma_col)
    radius = _radius(sigma)
    if radius > 0:
        acc = tl.zeros([LP, LINES], tl.float32)
        norm = 0.0
        for t in range(-radius, radius + 1):
            tap = tl.exp(-0.5 * (t / sigma) * (t / sigma))
            src = tl.minimum(tl.maximum(i + t, 0), L - 1)
            acc += tap * tl.load(image_ptr + base + src * S, mask=mask, other=0.0)
            norm += tap
        x = acc / norm
        tl.debug_barrier()                      # every tap read before any line is overwritten
        tl.store(image_ptr + base + i * S, x, mask=mask)
    else:
        if LAST:
            x = tl.load(image_ptr + base + i * S, mask=mask, other=0.0)
        else:
            x = tl.zeros([LP, LINES], tl.float32)
    step = tl.load(scalars_ptr + image * scalar_stride + step_col)
    offset = tl.load(scalars_ptr + image * scalar_stride + offset_col)
    if (step != 1.0) | (offset != 0.0):         # the acquisition resampling along this axis
        tl.debug_barrier()                      # the blurred lines are published
        x = _resample_gather(image_ptr + base, S, L, step, offset, i, mask)
        tl.debug_barrier()
        tl.store(image_ptr + base + i * S, x, mask=mask)
    if LAST:
        lo = tl.min(tl.min(tl.where(mask, x, float("inf")), axis=1), axis=0)
        hi = tl.max(tl.max(tl.where(mask, x, float("-inf")), axis=1), axis=0)
        tl.atomic_min(stats_ptr + image * STATS + LO, lo, sem="relaxed")
        tl.atomic_max(stats_ptr + image * STATS + HI, hi, sem="relaxed")


@triton.jit
def _normalise_kernel(image_ptr, stats_ptr, scalars_ptr, labels_ptr, apps, voxels, tiles,
                      scalar_stride, gamma_col, clear_col, BLOCK: tl.constexpr):
    """x = ((x - lo) / (hi - lo + eps)) ** gamma."""
    pid = tl.program_id(0)
    image = pid // tiles
    v = (pid % tiles) * BLOCK + tl.arange(0, BLOCK)
    inside = v < voxels
    ptrs = image_ptr + image.to(tl.int64) * voxels + v
    lo = tl.load(stats_ptr + image * STATS + LO)
    scale = 1.0 / (tl.load(stats_ptr + image * STATS + HI) - lo + NORMALISE_EPS)
    gamma = tl.load(scalars_ptr + image * scalar_stride + gamma_col)
    y = (tl.load(ptrs, mask=inside, other=0.0) - lo) * scale
    positive = y > 0.0                         # padded lanes and the minimum itself give 0
    # Capped at 1: the exact value is below 1, float rounding near x = hi is not.
    powered = tl.minimum(tl.exp2(gamma * tl.log2(tl.where(positive, y, 1.0))), 1.0)
    out = tl.where(positive, powered, 0.0)
    if tl.load(scalars_ptr + image * scalar_stride + clear_col) != 0.0:   # background clearing
        label = tl.load(labels_ptr + (image // apps).to(tl.int64) * voxels + v, mask=inside,
                        other=1)
        out = tl.where(label == 0, 0.0, out)
    tl.store(ptrs, out, mask=inside)


def _line_tile(length: int, lines: int) -> int:
    """Lines per program of a blur pass: all of them under the interpreter, else ~4096 voxels."""
    if _launch.interpreter_tiles():
        return min(pow2(lines), max(1, (1 << 18) // pow2(length)))
    return max(1, min(64, 4096 // pow2(length)))


def _blur_lines(image, stats, scalars, images, size, axis, last):
    """Launch the blur along `axis` (0 = D in 3D, or H) of an image of spatial `size`."""
    length = size[axis]
    stride = math.prod(size[axis + 1:])
    voxels = math.prod(size)
    lines = voxels // length
    per = _line_tile(length, lines)
    tiles = triton.cdiv(lines, per)
    dim = len(size)
    _blur_lines_kernel[(images * tiles,)](
        image, stats, scalars, lines, length, stride, voxels, tiles, scalars.shape[2],
        layout.blur_sigma(dim, axis), layout.resample_step(dim, axis),
        layout.resample_offset(dim, axis), LAST=last, LP=pow2(length), LINES=per,
        num_warps=8 if pow2(length) * per >= 4096 else 4)


def appearance(image, labels, label_stats, bias_coef, scalars, stats, sample_index,
               seed: int) -> None:
    """Render image [B, A, *S] and stats [B, A, 4] in place (see rasd_kernels.ops.appearance)."""
    dim, height, width, voxels, nd, nh, nw = launch_shape(image, bias_coef)
    size = tuple(image.shape[2:])
    batch, apps = image.shape[:2]
    images = batch * apps
    num_labels = label_stats.shape[2]
    stride = scalars.shape[2]

    count = layout.STAT_COUNT * images
    _init_stats_kernel[(triton.cdiv(count, 1024),)](stats, count, BLOCK=1024)

    block = flat_block(voxels, 512)
    tiles = triton.cdiv(voxels, block)
    _intensity_kernel[(images * tiles,)](
        image, labels, label_stats, bias_coef, scalars, stats, sample_index, seed, apps,
        num_labels, height, width, voxels, tiles, nd, nh, nw, stride, DIM=dim, BLOCK=block,
        LABELS=pow2(num_labels), num_warps=4)

    rows = voxels // width
    wp = pow2(width)
    per = (min(pow2(rows), max(1, (1 << 18) // wp)) if _launch.interpreter_tiles()
           else max(1, 1024 // wp))
    tiles = triton.cdiv(rows, per)
    _noise_blur_w_kernel[(images * tiles,)](
        image, stats, scalars, sample_index, seed, apps, rows, width, voxels, tiles, stride,
        layout.noise_std(dim), layout.blur_sigma(dim, dim - 1),
        layout.resample_step(dim, dim - 1), layout.resample_offset(dim, dim - 1), ROWS=per, WP=wp, num_warps=8 if per * wp >= 2048 else 4)

    for axis in reversed(range(dim - 1)):   # H, then D: the last one reduces min and max
        _blur_lines(image, stats, scalars, images, size, axis, last=axis == 0)

    block = flat_block(voxels, 1024)
    tiles = triton.cdiv(voxels, block)
    _normalise_kernel[(images * tiles,)](image, stats, scalars, labels, apps, voxels, tiles,
                                         stride, layout.gamma(dim),
                                         layout.clear_background(dim), BLOCK=block,
                                         num_warps=4)
