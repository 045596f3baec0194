"""`synthesize` and `synthesize_into`: compose the ops into RaSD images and label maps.

No kernels here: draw the parameters (rasd_kernels.params), then gmm_shapes and appearance.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch

from . import params
from .config import SynthesisConfig
from .ops import _checks
from .ops.appearance import appearance
from .ops.gmm_shapes import gmm_shapes
from .ops.philox_fill import MAX_SEED

_WORKSPACES: OrderedDict = OrderedDict()
_MAX_WORKSPACES = 8


def _workspace(batch, shape, num_labels, apps, config, device) -> params.Workspace:
    key = (batch, tuple(shape), num_labels, apps, config, str(device))
    ws = _WORKSPACES.get(key)
    if ws is None:
        ws = params.make_workspace(batch, shape, num_labels, apps, config, device)
        _WORKSPACES[key] = ws
        while len(_WORKSPACES) > _MAX_WORKSPACES:
            _WORKSPACES.popitem(last=False)
    _WORKSPACES.move_to_end(key)
    return ws


def _set_sample_index(ws: params.Workspace, start_index) -> None:
    batch = ws.sample_index.shape[0]
    if isinstance(start_index, torch.Tensor):
        if start_index.dim() != 0 or start_index.dtype != torch.int64:
            raise ValueError("start_index must be an int or a 0-dim int64 tensor, got "
                             f"{start_index.dtype} of shape {tuple(start_index.shape)}")
        torch.arange(batch, out=ws.sample_index)
        ws.sample_index.add_(start_index.to(ws.sample_index.device))
    else:
        _checks.integer("start_index", start_index, 0, MAX_SEED - batch)
        torch.arange(start_index, start_index + batch, out=ws.sample_index)


def synthesize_into(image: torch.Tensor, label: torch.Tensor, *, num_labels: int, seed: int,
                    start_index=0, config: SynthesisConfig | None = None,
                    backend: str = "auto") -> None:
    """Fill image [B, V*C, *S] (float32, [0, 1]) and label [B, *S] (uint8) in place.

    Row b is the sample of global index start_index + b: the same (seed, index) gives the same
    sample whatever the batch, backend or thread count. start_index may be a 0-dim int64
    tensor on the device (so a captured CUDA graph can be replayed with new indices).
    """
    config = config or SynthesisConfig()
    if not isinstance(config, SynthesisConfig):
        raise TypeError(f"config must be a SynthesisConfig, got {type(config).__name__}")
    _checks.tensor("image", image, dtype=torch.float32, dim=(4, 5))
    _checks.tensor("label", label, dtype=torch.uint8)
    batch, apps, shape = image.shape[0], image.shape[1], tuple(image.shape[2:])
    _checks.shape("label", label, (batch, *shape))
    _checks.same_device(image=image, label=label)
    _checks.integer("num_labels", num_labels, 1, 255)
    _checks.integer("seed", seed, 0, MAX_SEED)
    if batch < 1:
        raise ValueError("image must hold at least one sample (batch dimension is 0)")
    if apps % config.channels != 0:
        raise ValueError(f"image.shape[1] ({apps}) must be views * config.channels "
                         f"({config.channels})")
    ws = _workspace(batch, shape, num_labels, apps, config, image.device)
    _set_sample_index(ws, start_index)
    params.draw_anatomy(ws, shape, config, seed, backend)
    gmm_shapes(label, ws.fields, ws.warps, config.field_nodes, config.warp_nodes,
               config.shapes, backend)
    params.draw_appearance(ws, shape, config, seed, backend)
    appearance(image, label, ws.label_stats, ws.bias_coef, ws.scalars, ws.stats,
               ws.sample_index, seed, backend)


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


def synthesize(batch: int, shape, num_labels: int, *, seed: int, start_index=0,
               device="cpu", config: SynthesisConfig | None = None, views: int = 1,
               backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """A fresh batch: (image [B, V*C, *shape] float32 in [0, 1], label [B, *shape] uint8)."""
    config = config or SynthesisConfig()
    if not isinstance(config, SynthesisConfig):
        raise TypeError(f"config must be a SynthesisConfig, got {type(config).__name__}")
    _checks.integer("batch", batch, 1, 1 << 20)
    _checks.integer("views", views, 1, 64)
    shape = tuple(shape)
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in shape):
        raise TypeError(f"shape must be a tuple of ints, got {shape!r}")
    nodes = tuple(config.warp_nodes) + (config.field_nodes if config.shapes == "perlin" else ())
    _checks.spatial("shape", shape, nodes)
    device = torch.device(device)
    apps = views * config.channels
    need = batch * math.prod(shape) * (4 * apps + 1)
    have = _available_bytes(device)
    if need > have:
        raise ValueError(f"batch {batch} of shape {shape} with {apps} image channels needs "
                         f"{need / 2**30:.2f} GiB but only {have / 2**30:.2f} GiB is free on "
                         f"{device}; lower the batch or the size")
    image = torch.empty(batch, apps, *shape, dtype=torch.float32, device=device)
    label = torch.empty(batch, *shape, dtype=torch.uint8, device=device)
    synthesize_into(image, label, num_labels=num_labels, seed=seed, start_index=start_index,
                    config=config, backend=backend)
    return image, label
