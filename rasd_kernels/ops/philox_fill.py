"""Op `rasd::philox_fill`: fill a tensor in place with Philox4x32-10 uniform or normal draws.

out [B, ...] float32, contiguous; sample_index [B] int64: the global index of each row.
Element e of row b is philox(seed, sample_index[b], stream, e) (layout in rasd_kernels.streams).
"""

from __future__ import annotations

import torch

from .. import backends, streams
from . import _checks

DISTRIBUTIONS = ("normal", "uniform")
MAX_SEED = (1 << 63) - 1


@torch.library.custom_op("rasd::philox_fill", mutates_args=("out",))
def _philox_fill(out: torch.Tensor, sample_index: torch.Tensor, seed: int, stream: int,
                 distribution: str, backend: str) -> None:
    backends.implementation(backend, "philox_fill")(out, sample_index, seed, stream,
                                                    distribution)


@_philox_fill.register_fake
def _(out, sample_index, seed, stream, distribution, backend) -> None:
    return None


def check(out, sample_index, seed, stream, distribution) -> None:
    _checks.tensor("out", out, dtype=torch.float32)
    if out.dim() < 1 or out.shape[0] == 0:
        raise ValueError(f"out must have a non-empty batch dimension, got shape {tuple(out.shape)}")
    _checks.tensor("sample_index", sample_index, dtype=torch.int64, dim=1)
    _checks.shape("sample_index", sample_index, (out.shape[0],))
    _checks.same_device(out=out, sample_index=sample_index)
    _checks.integer("seed", seed, 0, MAX_SEED)
    _checks.integer("stream", stream, 0, (1 << 32) - 1)
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    per_sample = out[0].numel()
    if per_sample > streams.MAX_ELEMENTS_PER_STREAM:
        raise ValueError(f"out has {per_sample} elements per sample; a stream holds at most "
                         f"{streams.MAX_ELEMENTS_PER_STREAM}")


def philox_fill(out: torch.Tensor, sample_index: torch.Tensor, seed: int, stream: int,
                distribution: str = "normal", backend: str = "auto") -> torch.Tensor:
    """Fill `out` in place and return it."""
    check(out, sample_index, seed, stream, distribution)
    torch.ops.rasd.philox_fill(out, sample_index, seed, stream, distribution,
                               backends.resolve(backend, out.device))
    return out
