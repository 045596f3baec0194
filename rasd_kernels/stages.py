"""The two stages of synthesis on a parameter workspace, in the one order they run.

draw_labels: the anatomy's coarse grids (params.draw_anatomy), then the label maps
(gmm_shapes). draw_images: the appearances' parameters (params.draw_appearance), then the
images rendered from the label maps (appearance). `synthesize_into` runs both; the
benchmarks time them one by one. ws.sample_index must hold the batch's global indices.
"""

from __future__ import annotations

import torch

from . import params
from .config import SynthesisConfig
from .ops.appearance import appearance
from .ops.gmm_shapes import gmm_shapes


def draw_labels(ws: params.Workspace, label: torch.Tensor, config: SynthesisConfig, seed: int,
                backend: str = "auto") -> torch.Tensor:
    """Fill label [B, *S] with the label maps of ws.sample_index; returns it."""
    shape = tuple(label.shape[1:])
    params.draw_anatomy(ws, shape, config, seed, backend)
    return gmm_shapes(label, ws.fields, ws.warps, config.field_nodes, config.warp_nodes,
                      config.shapes, backend, config.border)


def draw_images(ws: params.Workspace, image: torch.Tensor, label: torch.Tensor,
                config: SynthesisConfig, seed: int, backend: str = "auto") -> torch.Tensor:
    """Fill image [B, A, *S] with the appearances of ws.sample_index rendered from label;
    returns it."""
    shape = tuple(image.shape[2:])
    params.draw_appearance(ws, shape, config, seed, backend)
    return appearance(image, label, ws.label_stats, ws.bias_coef, ws.scalars, ws.stats,
                      ws.sample_index, seed, backend)
