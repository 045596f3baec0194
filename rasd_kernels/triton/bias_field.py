"""Triton bias_field: image *= exp(psi), psi a cubic B-spline of coarse control points.

One program owns BLOCK consecutive voxels of one (sample, appearance) image and evaluates
the 4^d spline taps per voxel from the coefficient lattice (a few KB, cache resident).
`log_bias` is shared with the appearance kernels. Semantics: rasd_kernels.reference.bias_field.
"""

import math

import torch
import triton
import triton.language as tl

from ._launch import flat_block


@triton.jit
def _knot(pos, spacing, offset, n):
    """(first node index i - 1, weights of nodes i-1 .. i+2) along one axis.

    t = p / spacing + offset + 1, i = floor(t), f = t - i.
    """
    t = pos / spacing + offset + 1.0
    i = tl.floor(t)
    f = t - i
    f2 = f * f
    f3 = f2 * f
    one_minus = 1.0 - f
    w0 = one_minus * one_minus * one_minus * (1.0 / 6.0)
    w1 = (3.0 * f3 - 6.0 * f2 + 4.0) * (1.0 / 6.0)
    w2 = (-3.0 * f3 + 3.0 * f2 + 3.0 * f + 1.0) * (1.0 / 6.0)
    w3 = f3 * (1.0 / 6.0)
    # Clamp the float before converting so that no position can overflow the int.
    first = tl.minimum(tl.maximum(i, -4.0), n + 4.0).to(tl.int32) - 1
    return first, w0, w1, w2, w3


@triton.jit
def _node(first, j: tl.constexpr, n):
    """Index of tap j, clamped into [0, n - 1] (edge nodes repeat, as in the reference)."""
    return tl.minimum(tl.maximum(first + j, 0), n - 1)


@triton.jit
def _tap(w0, w1, w2, w3, j: tl.constexpr):
    if j == 0:
        w = w0
    elif j == 1:
        w = w1
    elif j == 2:
        w = w2
    else:
        w = w3
    return w


@triton.jit
def log_bias(coef_ptr, scalars_ptr, pd, ph, pw, nd, nh, nw, DIM: tl.constexpr):
    """psi at voxel positions (pd, ph, pw) from coef [nd, nh, nw] (nd = 1 in 2D).

    scalars_ptr: spacing (DIM), offset (DIM) of this (sample, appearance): columns a and
    DIM + a for axis a (rasd_kernels.layout.bias_spacing / bias_offset).
    """
    acc = tl.zeros_like(pw)
    if DIM == 3:
        jd, d0, d1, d2, d3 = _knot(pd, tl.load(scalars_ptr), tl.load(scalars_ptr + 3), nd)
        jh, h0, h1, h2, h3 = _knot(ph, tl.load(scalars_ptr + 1), tl.load(scalars_ptr + 4), nh)
        jw, w0, w1, w2, w3 = _knot(pw, tl.load(scalars_ptr + 2), tl.load(scalars_ptr + 5), nw)
        for a in tl.static_range(4):
            plane = coef_ptr + _node(jd, a, nd) * (nh * nw)
            part_h = tl.zeros_like(pw)
            for b in tl.static_range(4):
                line = plane + _node(jh, b, nh) * nw
                part_w = tl.zeros_like(pw)
                for c in tl.static_range(4):
                    part_w += _tap(w0, w1, w2, w3, c) * tl.load(line + _node(jw, c, nw))
                part_h += _tap(h0, h1, h2, h3, b) * part_w
            acc += _tap(d0, d1, d2, d3, a) * part_h
    else:
        jh, h0, h1, h2, h3 = _knot(ph, tl.load(scalars_ptr), tl.load(scalars_ptr + 2), nh)
        jw, w0, w1, w2, w3 = _knot(pw, tl.load(scalars_ptr + 1), tl.load(scalars_ptr + 3), nw)
        for b in tl.static_range(4):
            line = coef_ptr + _node(jh, b, nh) * nw
            part_w = tl.zeros_like(pw)
            for c in tl.static_range(4):
                part_w += _tap(w0, w1, w2, w3, c) * tl.load(line + _node(jw, c, nw))
            acc += _tap(h0, h1, h2, h3, b) * part_w
    return acc


@triton.jit
def voxel_position(v, voxels, H, W):
    """Clamped flat index -> float (d, h, w) positions (padded lanes take the last voxel)."""
    vc = tl.minimum(v, voxels - 1)
    pw = (vc % W).to(tl.float32)
    ph = ((vc // W) % H).to(tl.float32)
    pd = (vc // (W * H)).to(tl.float32)
    return pd, ph, pw


@triton.jit
def _bias_field_kernel(image_ptr, coef_ptr, scalars_ptr, H, W, voxels, tiles, nd, nh, nw,
                       scalar_stride, DIM: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    image = pid // tiles                       # flat (sample, appearance)
    v = (pid % tiles) * BLOCK + tl.arange(0, BLOCK)
    inside = v < voxels
    pd, ph, pw = voxel_position(v, voxels, H, W)
    psi = log_bias(coef_ptr + image.to(tl.int64) * (nd * nh * nw),
                   scalars_ptr + image * scalar_stride, pd, ph, pw, nd, nh, nw, DIM)
    ptrs = image_ptr + image.to(tl.int64) * voxels + v
    x = tl.load(ptrs, mask=inside, other=0.0)
    tl.store(ptrs, x * tl.exp(psi), mask=inside)


def launch_shape(image: torch.Tensor, coef: torch.Tensor):
    """(dim, H, W, voxels, nd, nh, nw) of an image [B, A, *S] and its lattice [B, A, *nodes]."""
    size = tuple(image.shape[2:])
    dim = len(size)
    voxels = math.prod(size)
    if voxels >= 1 << 31:
        raise ValueError(f"the triton kernels index voxels in int32; {size} has {voxels}")
    nodes = (1,) * (3 - dim) + tuple(coef.shape[2:])
    height, width = size[-2], size[-1]
    return dim, height, width, voxels, *nodes


def bias_field(image: torch.Tensor, coef: torch.Tensor, scalars: torch.Tensor) -> None:
    """image [B, A, *S] *= exp(psi) in place (see rasd_kernels.ops.bias_field)."""
    dim, height, width, voxels, nd, nh, nw = launch_shape(image, coef)
    images = image.shape[0] * image.shape[1]
    block = flat_block(voxels, 512)
    tiles = triton.cdiv(voxels, block)
    _bias_field_kernel[(images * tiles,)](
        image, coef, scalars, height, width, voxels, tiles, nd, nh, nw, scalars.shape[2],
        DIM=dim, BLOCK=block, num_warps=4)
