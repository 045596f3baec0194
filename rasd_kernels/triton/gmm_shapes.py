"""Triton gmm_shapes: coarse grids -> uint8 labels in one pass, warps fused.

One program owns BLOCK consecutive voxels of one sample (whole rows along W when W divides
BLOCK, so grid reads and label writes are coalesced). For each label k it evaluates the warp
u_k(p) from the coarse warp grids (trilinear, per voxel), the field at the warped position
and keeps a running argmax: nothing of full resolution but the labels ever exists.
Semantics: rasd_kernels.reference.gmm_shapes.
"""

import math

import torch
import triton
import triton.language as tl

from ._launch import flat_block


@triton.jit
def _axis(pos, last, n: tl.constexpr):
    """(i0, f) of the linear interpolant along one axis: n nodes over `last` + 1 voxels.

    The position is clamped into the volume; i0 is clamped again as an integer so that no
    input (not even NaN) can address outside the grid.
    """
    t = tl.minimum(tl.maximum(pos, 0.0), last) * ((n - 1) / last)
    i0 = tl.minimum(tl.floor(t), n - 2.0)
    i = tl.minimum(tl.maximum(i0.to(tl.int32), 0), n - 2)
    return i, t - i0


@triton.jit
def _lerp2(ptr, n: tl.constexpr, ih, fh, iw, fw):
    """Bilinear interpolation of the n x n grid at ptr."""
    base = ptr + ih * n + iw
    v00 = tl.load(base)
    v01 = tl.load(base + 1)
    v10 = tl.load(base + n)
    v11 = tl.load(base + n + 1)
    c0 = v00 + (v01 - v00) * fw
    c1 = v10 + (v11 - v10) * fw
    return c0 + (c1 - c0) * fh


@triton.jit
def _lerp3(ptr, n: tl.constexpr, id_, fd, ih, fh, iw, fw):
    """Trilinear interpolation of the n x n x n grid at ptr."""
    return (_lerp2(ptr + id_ * (n * n), n, ih, fh, iw, fw) * (1.0 - fd)
            + _lerp2(ptr + (id_ + 1) * (n * n), n, ih, fh, iw, fw) * fd)


@triton.jit
def _scales(ptr, NODES: tl.constexpr, pd, ph, pw, last_d, last_h, last_w, DIM: tl.constexpr):
    """sum_s linear(G_s, p) over the packed scales [sum_s n_s^DIM] at ptr."""
    total = tl.zeros_like(pw)
    off = 0
    for s in tl.static_range(len(NODES)):
        n = NODES[s]
        ih, fh = _axis(ph, last_h, n)
        iw, fw = _axis(pw, last_w, n)
        if DIM == 3:
            id_, fd = _axis(pd, last_d, n)
            total += _lerp3(ptr + off, n, id_, fd, ih, fh, iw, fw)
            off += n * n * n
        else:
            total += _lerp2(ptr + off, n, ih, fh, iw, fw)
            off += n * n
    return total


@triton.jit
def _warped(ptr, NODES: tl.constexpr, TOTAL: tl.constexpr, pd, ph, pw, last_d, last_h, last_w,
            DIM: tl.constexpr):
    """p + u(p) for one warp [DIM, TOTAL] at ptr (not clamped)."""
    if DIM == 3:
        qd = pd + _scales(ptr, NODES, pd, ph, pw, last_d, last_h, last_w, DIM)
        qh = ph + _scales(ptr + TOTAL, NODES, pd, ph, pw, last_d, last_h, last_w, DIM)
        qw = pw + _scales(ptr + 2 * TOTAL, NODES, pd, ph, pw, last_d, last_h, last_w, DIM)
    else:
        qd = pd
        qh = ph + _scales(ptr, NODES, pd, ph, pw, last_d, last_h, last_w, DIM)
        qw = pw + _scales(ptr + TOTAL, NODES, pd, ph, pw, last_d, last_h, last_w, DIM)
    return qd, qh, qw


@triton.jit
def _border_factor(q, last):
    """1 inside [0, last], falling linearly to 0 one voxel outside (border "zeros")."""
    outside = tl.maximum(tl.maximum(-q, q - last), 0.0)
    return tl.maximum(1.0 - outside, 0.0)


@triton.jit
def _blob_score(ptr, qd, qh, qw, DIM: tl.constexpr):
    """log w - 0.5 (q - c)^T A (q - c), parameters [centre, upper(A) row-major, log w]."""
    if DIM == 3:
        vd = qd - tl.load(ptr)
        vh = qh - tl.load(ptr + 1)
        vw = qw - tl.load(ptr + 2)
        quad = (tl.load(ptr + 3) * vd * vd + tl.load(ptr + 6) * vh * vh
                + tl.load(ptr + 8) * vw * vw
                + 2.0 * (tl.load(ptr + 4) * vd * vh + tl.load(ptr + 5) * vd * vw
                         + tl.load(ptr + 7) * vh * vw))
        log_weight = tl.load(ptr + 9)
    else:
        vh = qh - tl.load(ptr)
        vw = qw - tl.load(ptr + 1)
        quad = (tl.load(ptr + 2) * vh * vh + tl.load(ptr + 4) * vw * vw
                + 2.0 * tl.load(ptr + 3) * vh * vw)
        log_weight = tl.load(ptr + 5)
    return log_weight - 0.5 * quad


@triton.jit
def _gmm_shapes_kernel(labels_ptr, fields_ptr, warps_ptr, num_labels, H, W, voxels, tiles,
                       last_d, last_h, last_w,
                       FIELD_NODES: tl.constexpr, FIELD_TOTAL: tl.constexpr,
                       WARP_NODES: tl.constexpr, WARP_TOTAL: tl.constexpr,
                       BLOBS: tl.constexpr, ZEROS: tl.constexpr, DIM: tl.constexpr,
                       BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    b = pid // tiles
    v = (pid % tiles) * BLOCK + tl.arange(0, BLOCK)
    inside = v < voxels
    vc = tl.minimum(v, voxels - 1)          # padded lanes evaluate the last voxel, unstored
    pw = (vc % W).to(tl.float32)
    ph = ((vc // W) % H).to(tl.float32)
    pd = (vc // (W * H)).to(tl.float32)
    best = tl.full([BLOCK], float("-inf"), tl.float32)
    label = tl.zeros([BLOCK], tl.int32)
    if BLOBS:
        # One shared warp; the blob scores are evaluated at the unclamped p + u(p).
        qd, qh, qw = _warped(warps_ptr + b.to(tl.int64) * (DIM * WARP_TOTAL), WARP_NODES,
                             WARP_TOTAL, pd, ph, pw, last_d, last_h, last_w, DIM)
        params = fields_ptr + b.to(tl.int64) * num_labels * FIELD_TOTAL
        for k in range(num_labels):
            score = _blob_score(params + k * FIELD_TOTAL, qd, qh, qw, DIM)
            better = score > best                 # strict: ties keep the lowest k
            best = tl.where(better, score, best)
            label = tl.where(better, k, label)
    else:
        for k in range(num_labels):
            row = b.to(tl.int64) * num_labels + k
            qd, qh, qw = _warped(warps_ptr + row * (DIM * WARP_TOTAL), WARP_NODES, WARP_TOTAL,
                                 pd, ph, pw, last_d, last_h, last_w, DIM)
            # _axis clamps q into the volume, as the reference does before the field lookup.
            score = _scales(fields_ptr + row * FIELD_TOTAL, FIELD_NODES, qd, qh, qw,
                            last_d, last_h, last_w, DIM)
            if ZEROS:
                factor = _border_factor(qh, last_h) * _border_factor(qw, last_w)
                if DIM == 3:
                    factor = factor * _border_factor(qd, last_d)
                score = score * factor
            better = score > best
            best = tl.where(better, score, best)
            label = tl.where(better, k, label)
    tl.store(labels_ptr + b.to(tl.int64) * voxels + v, label.to(tl.uint8), mask=inside)


def gmm_shapes(labels: torch.Tensor, fields: torch.Tensor, warps: torch.Tensor, field_nodes,
               warp_nodes, mode: str, border: str = "edge") -> None:
    """Write labels [B, *S] in place (see rasd_kernels.ops.gmm_shapes)."""
    size = tuple(labels.shape[1:])
    dim = len(size)
    batch, num_labels = labels.shape[0], fields.shape[1]
    voxels = math.prod(size)
    if voxels >= 1 << 31:
        raise ValueError(f"the triton gmm_shapes kernel indexes voxels in int32; {size} has "
                         f"{voxels} voxels per sample")
    depth, height, width = (1,) * (3 - dim) + size
    blobs = mode == "blobs"
    block = flat_block(voxels, 256)
    tiles = triton.cdiv(voxels, block)
    _gmm_shapes_kernel[(batch * tiles,)](
        labels, fields, warps, num_labels, height, width, voxels, tiles,
        float(max(depth - 1, 1)), float(height - 1), float(width - 1),
        FIELD_NODES=tuple(int(n) for n in field_nodes), FIELD_TOTAL=fields.shape[2],
        WARP_NODES=tuple(int(n) for n in warp_nodes), WARP_TOTAL=warps.shape[3],
        BLOBS=blobs, ZEROS=border == "zeros" and not blobs, DIM=dim, BLOCK=block,
        num_warps=8)
