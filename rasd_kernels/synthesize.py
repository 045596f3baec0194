"""`synthesize` and `synthesize_into`: compose the ops into RaSD images and label maps.

No kernels here: check the arguments, then run the two stages (rasd_kernels.stages) on a
parameter workspace.
Any number of threads may call both at once: the parameter workspace of a call belongs to
the calling thread, and every sample equals the serial one bit for bit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch

from . import backends, memory, params, stages
from .config import SynthesisConfig
from .ops import _checks
from .ops.philox_fill import MAX_SEED

# Workspaces belong to the calling thread: two threads synthesising the same key at once would
# otherwise overwrite each other's parameters between the ops (the kernels release the GIL).
# Each thread keeps its few most recent keys; a thread's cache goes with the thread.
_THREAD = threading.local()
WORKSPACES_PER_THREAD = 4


def _workspace(batch, shape, num_labels, apps, config, device) -> params.Workspace:
    if torch.compiler.is_compiling():   # a traced graph allocates its own (once, at capture)
        return params.make_workspace(batch, shape, num_labels, apps, config, device)
    cache = getattr(_THREAD, "workspaces", None)
    if cache is None:
        cache = _THREAD.workspaces = OrderedDict()
    key = (batch, tuple(shape), num_labels, apps, config, str(device))
    ws = cache.get(key)
    if ws is None:
        ws = params.make_workspace(batch, shape, num_labels, apps, config, device)
        cache[key] = ws
        while len(cache) > WORKSPACES_PER_THREAD:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return ws


def _config(config) -> SynthesisConfig:
    config = config if config is not None else SynthesisConfig()
    if not isinstance(config, SynthesisConfig):
        raise TypeError(f"config must be a SynthesisConfig, got {type(config).__name__}")
    return config


def _check_start_index(start_index, batch: int):
    """An int, or a 0-dim int64 tensor (its value is checked where that needs no device
    sync: on the CPU, outside tracing)."""
    last = MAX_SEED - batch          # the exclusive end of the rows fits in int64
    if isinstance(start_index, torch.Tensor):
        if start_index.dim() != 0 or start_index.dtype != torch.int64:
            raise ValueError("start_index must be an int or a 0-dim int64 tensor, got "
                             f"{start_index.dtype} of shape {tuple(start_index.shape)}")
        if start_index.device.type == "cpu" and not torch.compiler.is_compiling():
            _checks.integer("start_index", int(start_index), 0, last)
        return start_index
    return _checks.integer("start_index", start_index, 0, last)


def _set_sample_index(ws: params.Workspace, start_index) -> None:
    batch = ws.sample_index.shape[0]
    if isinstance(start_index, torch.Tensor):
        torch.arange(batch, out=ws.sample_index)
        ws.sample_index.add_(start_index.to(ws.sample_index.device))
    else:
        torch.arange(start_index, start_index + batch, out=ws.sample_index)


def synthesize_into(image: torch.Tensor, label: torch.Tensor, *, num_labels: int, seed: int,
                    start_index=0, config: SynthesisConfig | None = None,
                    backend: str = "auto") -> None:
    """Fill image [B, V*C, *S] (float32, [0, 1]) and label [B, *S] (uint8) in place.

    Row b is the sample of global index start_index + b: the same (seed, index) gives the same
    sample whatever the batch, backend or thread count. start_index may be a 0-dim int64
    tensor on the device (so a captured CUDA graph can be replayed with new indices).
    """
    config = _config(config)
    _checks.tensor("image", image, dtype=torch.float32, dim=(4, 5))
    _checks.tensor("label", label, dtype=torch.uint8)
    batch, apps, shape = image.shape[0], image.shape[1], tuple(image.shape[2:])
    _checks.shape("label", label, (batch, *shape))
    _checks.same_device(image=image, label=label)
    _checks.output("image", image)
    _checks.output("label", label)
    _checks.disjoint(image=image, label=label)
    num_labels = _checks.integer("num_labels", num_labels, 1, 255)
    seed = _checks.integer("seed", seed, 0, MAX_SEED)
    start_index = _check_start_index(start_index, batch)
    if apps % config.channels != 0:
        raise ValueError(f"image.shape[1] ({apps}) must be views * config.channels "
                         f"({config.channels})")
    ws = _workspace(batch, shape, num_labels, apps, config, image.device)
    _set_sample_index(ws, start_index)
    stages.draw_labels(ws, label, config, seed, backend)
    stages.draw_images(ws, image, label, config, seed, backend)


def _device(device) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a torch device: {exc}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {str(device)!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        why = ("this torch is a CPU-only build" if torch.version.cuda is None
               else "no CUDA device is visible")
        raise ValueError(f"device {str(device)!r} was asked for, but {why}; use device='cpu'")
    return device


def _check_fits(batch: int, shape, num_labels: int, apps: int, config: SynthesisConfig,
                device: torch.device, backend: str) -> None:
    concrete = backends.resolve(backend, device)
    if concrete == "cpu":
        problem = memory.bias_nodes_error(shape, config)
        if problem:
            raise ValueError(problem)
    threads = backends.cpu_threads() if concrete == "cpu" else 1
    need = memory.call_bytes(batch, shape, num_labels, apps, config, concrete, threads)
    have = memory.available_bytes(device)
    if need > have:
        raise MemoryError(f"batch {batch} of shape {shape} with {apps} image channels needs "
                          f"about {need / 2**30:.2f} GiB (outputs, parameters and the "
                          f"{concrete} kernels' scratch) but only {have / 2**30:.2f} GiB is "
                          f"free on {device}; lower the batch or the size")


def synthesize(batch: int, shape, num_labels: int, *, seed: int, start_index=0,
               device="cpu", config: SynthesisConfig | None = None, views: int = 1,
               backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """A fresh batch: (image [B, V*C, *shape] float32 in [0, 1], label [B, *shape] uint8)."""
    config = _config(config)
    batch = _checks.integer("batch", batch, 1, 1 << 20)
    views = _checks.integer("views", views, 1, 64)
    num_labels = _checks.integer("num_labels", num_labels, 1, 255)
    shape = _checks.spatial_shape("shape", shape)
    nodes = tuple(config.warp_nodes) + (config.field_nodes if config.shapes == "perlin" else ())
    _checks.spatial("shape", shape, nodes)
    device = _device(device)
    apps = views * config.channels
    _check_fits(batch, shape, num_labels, apps, config, device, backend)
    image = torch.empty(batch, apps, *shape, dtype=torch.float32, device=device)
    label = torch.empty(batch, *shape, dtype=torch.uint8, device=device)
    synthesize_into(image, label, num_labels=num_labels, seed=seed, start_index=start_index,
                    config=config, backend=backend)
    return image, label
