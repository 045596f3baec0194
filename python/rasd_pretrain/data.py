"""Fresh synthetic batches on the training device, drawn into preallocated buffers each step.

No DataLoader, no FIFO, no generator state: the batch of a step is a pure function of
(seed, global sample index), and which indices a rank draws at a step is
rasd_kernels.data.sample_indices (the formula SyntheticDataset uses too): rank r of R draws
rows [r L, (r + 1) L) of the step's global batch [step G, (step + 1) G), L = G / R. So the
data stream does not depend on the world size, never repeats across ranks, and a resumed
run sees exactly the data it would have seen.
"""

from __future__ import annotations

import torch

from rasd_kernels import SynthesisConfig, synthesize_into
from rasd_kernels.data import sample_indices


def local_batch(global_batch: int, world_size: int) -> int:
    """Rows per rank; a clear error when the global batch does not split over the ranks."""
    return len(sample_indices(0, global_batch, world_size=world_size))


class SyntheticBatches:
    """Preallocated image [L, V*C, *S] and label [L, *S] buffers, refilled by `draw(step)`."""

    def __init__(self, *, shape, num_labels: int, global_batch: int, rank: int,
                 world_size: int, views: int, config: SynthesisConfig, seed: int,
                 backend: str, device: torch.device) -> None:
        self.shape, self.num_labels, self.views = tuple(shape), num_labels, views
        self.channels = config.channels
        self.global_batch, self.rank, self.world_size = global_batch, rank, world_size
        self.local_batch = local_batch(global_batch, world_size)
        self.config, self.seed, self.backend = config, seed, backend
        self.image = torch.empty(self.local_batch, views * config.channels, *self.shape,
                                 dtype=torch.float32, device=device)
        self.label = torch.empty(self.local_batch, *self.shape, dtype=torch.uint8,
                                 device=device)

    def indices(self, step: int) -> range:
        return sample_indices(step, self.global_batch, rank=self.rank,
                              world_size=self.world_size)

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
