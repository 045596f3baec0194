"""Reference of the GMM shapes op: coarse grids -> label map, in float64.

perlin (SPEC 2): phi_k(p) = sum_s interp(F_{k,s}, p); u_k(p) = sum_s interp(W_{k,s}, p);
    score_k(p) = phi_k(p + u_k(p)), the warped position clamped into the volume (border
    "edge"); with border "zeros" (the published zero padding) times prod_a
    clamp(1 - o_a, 0, 1), o_a how far the position lies outside axis a (0 inside): the field
    falls linearly to 0 within one voxel outside the volume, as a resampling of the
    full-resolution field with zero padding does.
blobs: one shared warp u; score_k(p) = log w_k - 0.5 (q - c_k)^T A_k (q - c_k), q = p + u(p).
Label = argmax_k score_k, ties to the lowest k.
"""

from __future__ import annotations

import torch

from . import interp


def split_grids(packed: torch.Tensor, nodes, d: int) -> list[torch.Tensor]:
    """Unpack [..., sum(n^d)] into one [..., n, .., n] tensor per scale."""
    grids, start = [], 0
    for n in nodes:
        size = n ** d
        grids.append(packed[..., start:start + size].reshape(*packed.shape[:-1], *([n] * d)))
        start += size
    return grids


def warped_positions(warp: torch.Tensor, warp_nodes, shape) -> torch.Tensor:
    """p + u(p) for one warp [d, sum(n^d)]: [*shape, d]."""
    d = len(shape)
    pos = interp.voxel_positions(shape)
    disp = [sum(interp.linear(g, pos, shape) for g in split_grids(warp[axis], warp_nodes, d))
            for axis in range(d)]
    return pos + torch.stack(disp, dim=-1)


def unpack_blob(params: torch.Tensor, d: int):
    """(centre [d], precision [d, d], log weight) from [d + d(d+1)/2 + 1]."""
    p = params.double()
    centre, rest = p[:d], p[d:]
    precision = torch.zeros(d, d, dtype=torch.float64)
    rows, cols = torch.triu_indices(d, d)
    precision[rows, cols] = rest[: len(rows)]
    precision[cols, rows] = rest[: len(rows)]
    return centre, precision, rest[len(rows)]


def border_weight(q: torch.Tensor, shape) -> torch.Tensor:
    """prod_a clamp(1 - outside_a, 0, 1) of warped positions q [..., d] (border "zeros")."""
    weight = torch.ones(q.shape[:-1], dtype=torch.float64)
    for a, n in enumerate(shape):
        outside = torch.clamp(torch.maximum(-q[..., a], q[..., a] - (n - 1)), min=0.0)
        weight = weight * torch.clamp(1.0 - outside, min=0.0)
    return weight


def scores(fields: torch.Tensor, warps: torch.Tensor, field_nodes, warp_nodes,
           shape: tuple[int, ...], mode: str, border: str = "edge") -> torch.Tensor:
    """Per-label scores [B, K, *shape] in float64 (labels are their argmax)."""
    d = len(shape)
    batch, num_labels = fields.shape[:2]
    out = torch.empty(batch, num_labels, *shape, dtype=torch.float64)
    for b in range(batch):
        shared = warped_positions(warps[b, 0], warp_nodes, shape) if mode == "blobs" else None
        for k in range(num_labels):
            if mode == "perlin":
                q = warped_positions(warps[b, k], warp_nodes, shape)
                weight = border_weight(q, shape) if border == "zeros" else 1.0
                q = torch.stack([q[..., a].clamp(0, shape[a] - 1) for a in range(d)], dim=-1)
                out[b, k] = weight * sum(interp.linear(g, q, shape)
                                         for g in split_grids(fields[b, k], field_nodes, d))
            else:
                centre, precision, log_weight = unpack_blob(fields[b, k], d)
                v = shared - centre
                out[b, k] = log_weight - 0.5 * torch.einsum("...i,ij,...j->...", v, precision, v)
    return out


def gmm_shapes(labels: torch.Tensor, fields, warps, field_nodes, warp_nodes, mode: str,
               border: str = "edge") -> None:
    """Write argmax labels (uint8) into labels [B, *shape]."""
    s = scores(fields.cpu(), warps.cpu(), field_nodes, warp_nodes, tuple(labels.shape[1:]), mode,
               border)
    labels.copy_(torch.argmax(s, dim=1).to(torch.uint8))
