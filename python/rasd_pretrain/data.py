"""Fresh synthetic batches on the training device, drawn into preallocated buffers each step.

No DataLoader, no FIFO, no generator state: the batch of a step is a pure function of
(seed, global sample index). Rank r of a world of W ranks with local batch L = G / W draws
global indices step * G + r * L + i, i < L. The union over ranks of one step is
[step * G, (step + 1) * G), so the data stream does not depend on the world size, never
repeats across ranks, and a resumed run sees exactly the data it would have seen.
"""

from __future__ import annotations

import torch

from rasd_kernels import SynthesisConfig, synthesize_into


def local_batch(global_batch: int, world_size: int) -> int:
    if global_batch % world_size:
        raise ValueError(f"batch {global_batch} (the global batch) must be divisible by the "
                         f"number of ranks ({world_size})")
    return global_batch // world_size


def start_index(step: int, global_batch: int, rank: int, local: int) -> int:
    """Global index of row 0 of this rank's batch at `step`."""
    return step * global_batch + rank * local


class SyntheticBatches:
    """Preallocated image [L, V*C, *S] and label [L, *S] buffers, refilled by `draw(step)`."""

    def __init__(self, *, shape, num_labels: int, global_batch: int, rank: int,
                 world_size: int, views: int, config: SynthesisConfig, seed: int,
                 backend: str, device: torch.device) -> None:
        self.shape, self.num_labels, self.views = tuple(shape), num_labels, views
        self.channels = config.channels
        self.global_batch, self.rank = global_batch, rank
        self.local_batch = local_batch(global_batch, world_size)
        self.config, self.seed, self.backend = config, seed, backend
        self.image = torch.empty(self.local_batch, views * config.channels, *self.shape,
                                 dtype=torch.float32, device=device)
        self.label = torch.empty(self.local_batch, *self.shape, dtype=torch.uint8,
                                 device=device)

    def indices(self, step: int) -> range:
        first = start_index(step, self.global_batch, self.rank, self.local_batch)
        return range(first, first + self.local_batch)

    def draw(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Fill the buffers with the samples of `step`; returns (image, label) (the buffers)."""
        synthesize_into(self.image, self.label, num_labels=self.num_labels, seed=self.seed,
                        start_index=self.indices(step).start, config=self.config,
                        backend=self.backend)
        return self.image, self.label

    def views_as_batch(self) -> torch.Tensor:
        """Image [L, V*C, *S] as [V*L, C, *S], view-major (rows v*L .. v*L + L - 1 are view v)."""
        L, V, C = self.local_batch, self.views, self.channels
        x = self.image.reshape(L, V, C, *self.shape).transpose(0, 1)
        return x.reshape(V * L, C, *self.shape)
