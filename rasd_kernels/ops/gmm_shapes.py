"""Op `rasd::gmm_shapes`: coarse grids -> uint8 label map, warps fused, one pass.

labels [B, *S] uint8 (S 2D or 3D), written in place.
perlin: fields [B, K, sum_s n_s^d] (field grids, amplitudes folded in, C order per grid);
        warps  [B, K, d, sum_s m_s^d] (displacement in voxels along each axis, D/H/W order).
blobs:  fields [B, K, d + d(d+1)/2 + 1] (centre, precision upper triangle row-major, log w);
        warps  [B, 1, d, sum_s m_s^d] (one shared warp).
border: "edge" or "zeros" (perlin only; see the reference). The semantics are those of
rasd_kernels.reference.gmm_shapes; no backend materialises a full-resolution field or
displacement.
"""

from __future__ import annotations

import torch

from .. import backends
from .. import layout
from ..config import BORDER_MODES, SHAPE_MODES
from . import _checks

MODES, BORDERS = SHAPE_MODES, BORDER_MODES


@torch.library.custom_op("rasd::gmm_shapes", mutates_args=("labels",))
def _gmm_shapes(labels: torch.Tensor, fields: torch.Tensor, warps: torch.Tensor,
                field_nodes: list[int], warp_nodes: list[int], shape_mode: str, border: str,
                backend: str) -> None:
    # (`mode` is a reserved argument name inside torch.compile's dispatch.)
    backends.implementation(backend, "gmm_shapes")(labels, fields, warps, field_nodes,
                                                   warp_nodes, shape_mode, border)


@_gmm_shapes.register_fake
def _(labels, fields, warps, field_nodes, warp_nodes, shape_mode, border, backend) -> None:
    return None


def check(labels, fields, warps, field_nodes, warp_nodes, mode, border="edge") -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    _checks.tensor("labels", labels, dtype=torch.uint8, dim=(3, 4))
    size = tuple(labels.shape[1:])
    d = len(size)
    for name, nodes in (("field_nodes", field_nodes), ("warp_nodes", warp_nodes)):
        if mode == "blobs" and name == "field_nodes":
            continue
        if not nodes or any(not isinstance(n, int) or n < 2 for n in nodes):
            raise ValueError(f"{name} must be a non-empty list of ints >= 2, got {nodes!r}")
    grid_nodes = tuple(warp_nodes) + (tuple(field_nodes) if mode == "perlin" else ())
    _checks.spatial("labels spatial shape", size, grid_nodes)
    _checks.tensor("fields", fields, dtype=torch.float32, dim=3)
    _checks.tensor("warps", warps, dtype=torch.float32, dim=4)
    batch, num_labels = labels.shape[0], fields.shape[1]
    _checks.integer("number of labels (fields.shape[1])", num_labels, 1, 255)
    if mode == "perlin":
        _checks.shape("fields", fields, (batch, num_labels, layout.grid_total(field_nodes, d)))
        _checks.shape("warps", warps, (batch, num_labels, d, layout.grid_total(warp_nodes, d)))
    else:
        _checks.shape("fields", fields, (batch, num_labels, layout.blob_param_count(d)))
        _checks.shape("warps", warps, (batch, 1, d, layout.grid_total(warp_nodes, d)))
    _checks.same_device(labels=labels, fields=fields, warps=warps)


def gmm_shapes(labels: torch.Tensor, fields: torch.Tensor, warps: torch.Tensor,
               field_nodes, warp_nodes, mode: str = "perlin", backend: str = "auto",
               border: str = "edge") -> torch.Tensor:
    """Write the label map into `labels` and return it."""
    field_nodes, warp_nodes = list(field_nodes), list(warp_nodes)
    check(labels, fields, warps, field_nodes, warp_nodes, mode, border)
    torch.ops.rasd.gmm_shapes(labels, fields, warps, field_nodes, warp_nodes, mode, border,
                              backends.resolve(backend, labels.device))
    return labels
