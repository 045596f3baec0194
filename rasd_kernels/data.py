"""Synthetic batches for training loops: which samples a step draws, and a Dataset.

Every sample is a pure function of (seed, global sample index), so a data stream is fixed by
which indices each step draws. `sample_indices` says it, for one DataLoader worker of one
rank; the Dataset and the pre-training driver both call it:

- step t draws the global batch of G samples with indices [t G, (t + 1) G);
- rank r of R draws rows [r L, (r + 1) L) of it, L = G / R;
- the steps of an iteration that starts at step s are dealt to the N DataLoader workers in
  turn: step s + j is drawn, whole, by worker j mod N. That is the order in which torch's
  DataLoader reads its workers, so the loader yields the steps in order, one rank-local batch
  per item, whatever N is.

So the union over ranks and workers of one step is its global batch, no index is drawn twice,
the stream does not depend on the world size or the number of workers, and a run resumed at
step t draws exactly what it would have drawn.
"""

from __future__ import annotations

import numbers
import os
import warnings

import torch

from .config import SynthesisConfig
from .ops import _checks
from .ops.philox_fill import MAX_SEED
from .synthesize import synthesize_into

LABEL_DTYPES = (torch.uint8, torch.int64)


def _count(name: str, value, lo: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    return int(value)


def sample_indices(step: int, global_batch: int, *, rank: int = 0, world_size: int = 1,
                   worker: int = 0, num_workers: int = 1, start_step: int = 0) -> range:
    """Global sample indices that DataLoader worker `worker` of rank `rank` draws at `step`.

    A range of global_batch / world_size consecutive indices for the worker that draws the
    step (worker (step - start_step) mod num_workers), an empty range for the others (module
    docstring). Raises ValueError when the global batch does not split over the ranks.
    """
    step = _count("step", step, 0)
    global_batch = _count("global_batch", global_batch, 1)
    world_size = _count("world_size", world_size, 1)
    rank = _count("rank", rank, 0)
    num_workers = _count("num_workers", num_workers, 1)
    worker = _count("worker", worker, 0)
    start_step = _count("start_step", start_step, 0)
    if rank >= world_size:
        raise ValueError(f"rank {rank} is not below world_size {world_size}")
    if worker >= num_workers:
        raise ValueError(f"worker {worker} is not below num_workers {num_workers}")
    if step < start_step:
        raise ValueError(f"step {step} comes before start_step {start_step}")
    if global_batch % world_size:
        raise ValueError(f"the global batch ({global_batch}) must be divisible by the number "
                         f"of ranks (world_size {world_size})")
    local = global_batch // world_size
    first = step * global_batch + rank * local
    if (step - start_step) % num_workers != worker:
        return range(first, first)
    return range(first, first + local)


def _distributed_rank() -> tuple[int, int]:
    """(rank, world size) of the initialised torch.distributed group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class SyntheticDataset(torch.utils.data.IterableDataset):
    """Fresh RaSD batches as MONAI-style dicts, one rank-local batch per item.

    Each item is a dict
      "image": [L, V*C, *shape] float32 in [0, 1] (V views of C channels),
      "label": [L, 1, *shape] label_dtype (the channel axis that MONAI's losses expect),
      "index": [L] int64, the global sample index of each row (rk.synthesize at that index
               and the same seed gives the row again),
      "step":  the step (int).
    L = global_batch / world_size. Use it with batch_size=None in the DataLoader (items are
    batches already: one call of the batched kernel each).

    Steps run from start_step (resume there), for `steps` steps or for ever (steps=None).
    rank and world_size default to the initialised torch.distributed group (0 and 1 without
    one); the DataLoader worker comes from torch.utils.data.get_worker_info(). In a worker
    process the CPU kernels run on `threads` threads (default 1, as torch's own ops in
    DataLoader workers); in the main process (and in MONAI's ThreadDataLoader) threads=None
    leaves the kernel thread count as it is. `transform` is applied to each sample's dict
    (image [V*C, *shape], label [1, *shape], index, step) as a MONAI Dataset applies its
    transform, and the results are stacked back into the batch.
    """

    def __init__(self, global_batch: int, shape, num_labels: int, *, seed: int,
                 config: SynthesisConfig | None = None, views: int = 1, start_step: int = 0,
                 steps: int | None = None, rank: int | None = None,
                 world_size: int | None = None, label_dtype: torch.dtype = torch.int64,
                 device="cpu", backend: str = "auto", threads: int | None = None,
                 transform=None) -> None:
        super().__init__()
        self.config = config if config is not None else SynthesisConfig()
        if not isinstance(self.config, SynthesisConfig):
            raise TypeError(f"config must be a SynthesisConfig, got {type(config).__name__}")
        self.shape = _checks.spatial_shape("shape", shape)
        self.num_labels = _checks.integer("num_labels", num_labels, 1, 255)
        self.seed = _checks.integer("seed", seed, 0, MAX_SEED)
        self.views = _checks.integer("views", views, 1, 64)
        self.global_batch = _count("global_batch", global_batch, 1)
        self.start_step = _count("start_step", start_step, 0)
        self.steps = None if steps is None else _count("steps", steps, 1)
        if (rank is None) != (world_size is None):
            raise ValueError("give both rank and world_size, or neither (then they come from "
                             "torch.distributed)")
        self.rank, self.world_size = (rank, world_size) if rank is not None else (None, None)
        if label_dtype not in LABEL_DTYPES:
            raise ValueError(f"label_dtype must be one of {LABEL_DTYPES}, got {label_dtype}")
        self.label_dtype = label_dtype
        self.device = torch.device(device)
        self.backend = backend
        self.threads = None if threads is None else _count("threads", threads, 1)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.transform = transform
        # Checks the split (and the arguments) now, not in a worker.
        sample_indices(self.start_step, self.global_batch, rank=self._rank_world()[0],
                       world_size=self._rank_world()[1])

    def _rank_world(self) -> tuple[int, int]:
        if self.rank is not None:
            return self.rank, self.world_size
        return _distributed_rank()

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("an endless SyntheticDataset (steps=None) has no length")
        return self.steps

    def __iter__(self):
        rank, world = self._rank_world()
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None:
            _prepare_worker_threads(self.threads)
        local = len(sample_indices(self.start_step, self.global_batch, rank=rank,
                                   world_size=world))
        step = self.start_step + worker
        while self.steps is None or step < self.start_step + self.steps:
            rows = sample_indices(step, self.global_batch, rank=rank, world_size=world,
                                  worker=worker, num_workers=workers,
                                  start_step=self.start_step)
            yield self._batch(step, rows, local)
            step += workers

    def _batch(self, step: int, rows: range, local: int) -> dict:
        image = torch.empty(local, self.views * self.config.channels, *self.shape,
                            device=self.device)
        label = torch.empty(local, *self.shape, dtype=torch.uint8, device=self.device)
        synthesize_into(image, label, num_labels=self.num_labels, seed=self.seed,
                        start_index=rows.start, config=self.config, backend=self.backend)
        label = label.unsqueeze(1)
        if self.label_dtype != torch.uint8:
            label = label.to(self.label_dtype)
        index = torch.arange(rows.start, rows.stop, dtype=torch.int64)
        batch = {"image": image, "label": label, "index": index, "step": step}
        return batch if self.transform is None else self._transformed(batch)

    def _transformed(self, batch: dict) -> dict:
        samples = [self.transform({"image": batch["image"][i], "label": batch["label"][i],
                                   "index": batch["index"][i], "step": batch["step"]})
                   for i in range(batch["index"].numel())]
        out = {}
        for key, first in samples[0].items():
            values = [s[key] for s in samples]
            out[key] = (torch.stack([torch.as_tensor(v) for v in values])
                        if isinstance(first, torch.Tensor) else values[0] if key == "step"
                        else values)
        return out


def _prepare_worker_threads(threads: int | None) -> None:
    """Kernel threads in a DataLoader worker process (default 1, like torch's own there)."""
    from .backends import cpu

    if cpu.unavailable_reason() is not None:
        return
    cpu.set_num_threads(threads or 1)
    if torch.get_num_threads() > 1 and not cpu.openmp_usable():
        warnings.warn(
            f"torch runs {torch.get_num_threads()} threads in this forked DataLoader worker "
            f"(pid {os.getpid()}): torch's own OpenMP loops can hang after a fork when the "
            "parent had started its threads. Leave torch at 1 thread in workers and pass "
            "threads=N to SyntheticDataset (its kernels run on threads of their own), or use "
            "multiprocessing_context='spawn'.", RuntimeWarning, stacklevel=3)
