"""Op `rasd::appearance`: label map -> image (intensities, texture, bias, noise, blur,
min-max normalisation, gamma), in place.

image [B, A, *S] float32 (A = views * channels; appearance a draws its noise from the
per-voxel streams at elements a * prod(S) + voxel); labels [B, *S] uint8 (< K);
label_stats [B, A, K, 2] (mean, texture std); bias_coef [B, A, *nodes];
scalars [B, A, layout.scalar_count(d)] and stats [B, A, 4] float32 (rasd_kernels.layout); stats is
written: (max|x| before noise, min and max after blur, 0); sample_index [B] int64.
Semantics: rasd_kernels.reference.appearance.
"""

from __future__ import annotations

import math

import torch

from .. import backends, streams
from .. import layout
from . import _checks
from .bias_field import check as check_bias
from .philox_fill import MAX_SEED


@torch.library.custom_op("rasd::appearance", mutates_args=("image", "stats"))
def _appearance(image: torch.Tensor, labels: torch.Tensor, label_stats: torch.Tensor,
                bias_coef: torch.Tensor, scalars: torch.Tensor, stats: torch.Tensor,
                sample_index: torch.Tensor, seed: int, backend: str) -> None:
    backends.implementation(backend, "appearance")(image, labels, label_stats, bias_coef,
                                                   scalars, stats, sample_index, seed)


@_appearance.register_fake
def _(image, labels, label_stats, bias_coef, scalars, stats, sample_index, seed, backend) -> None:
    return None


def check(image, labels, label_stats, bias_coef, scalars, stats, sample_index, seed) -> None:
    check_bias(image, bias_coef, scalars)
    batch, apps, size = image.shape[0], image.shape[1], tuple(image.shape[2:])
    d = len(size)
    _checks.tensor("labels", labels, dtype=torch.uint8)
    _checks.shape("labels", labels, (batch, *size))
    _checks.tensor("label_stats", label_stats, dtype=torch.float32, dim=4)
    if tuple(label_stats.shape[:2]) != (batch, apps) or label_stats.shape[3] != layout.LABEL_STATS:
        raise ValueError(f"label_stats must have shape [{batch}, {apps}, K, {layout.LABEL_STATS}], "
                         f"got {tuple(label_stats.shape)}")
    _checks.integer("number of labels (label_stats.shape[2])", label_stats.shape[2], 1, 255)
    _checks.shape("scalars", scalars, (batch, apps, layout.scalar_count(d)))
    _checks.tensor("stats", stats, dtype=torch.float32)
    _checks.shape("stats", stats, (batch, apps, layout.STAT_COUNT))
    _checks.tensor("sample_index", sample_index, dtype=torch.int64)
    _checks.shape("sample_index", sample_index, (batch,))
    _checks.integer("seed", seed, 0, MAX_SEED)
    if apps * math.prod(size) > streams.MAX_ELEMENTS_PER_STREAM:
        raise ValueError(f"image has {apps * math.prod(size)} voxels per sample; the noise "
                         f"streams hold at most {streams.MAX_ELEMENTS_PER_STREAM}")
    _checks.same_device(image=image, labels=labels, label_stats=label_stats, stats=stats,
                        sample_index=sample_index)


def appearance(image, labels, label_stats, bias_coef, scalars, stats, sample_index, seed: int,
               backend: str = "auto") -> torch.Tensor:
    """Render `image` in place from `labels` and the drawn parameters; return it."""
    check(image, labels, label_stats, bias_coef, scalars, stats, sample_index, seed)
    torch.ops.rasd.appearance(image, labels, label_stats, bias_coef, scalars, stats,
                              sample_index, seed, backends.resolve(backend, image.device))
    return image
