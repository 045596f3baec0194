"""Reference of the Philox fill op."""

from __future__ import annotations

from . import philox


def philox_fill(out, sample_index, seed: int, stream: int, distribution: str) -> None:
    """Fill out [B, ...] with float64 Philox draws rounded to out's dtype."""
    out.copy_(philox.fill(tuple(out.shape), sample_index, seed, stream, distribution))
