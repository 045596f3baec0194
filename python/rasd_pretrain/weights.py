"""`load_pretrained`: RaSD pre-trained weights into your own network, all but the head.

    from monai.networks.nets import UNet
    from rasd_pretrain import load_pretrained

    net = UNet(spatial_dims=3, in_channels=1, out_channels=4, channels=(8, 16, 32, 64),
               strides=(2, 2, 2), num_res_units=1)          # as pre-trained, 4 classes
    report = load_pretrained(net, "runs/x/export")
    print(report)           # loaded / skipped (with the reason) / left at initialisation

A pre-training network ends in a 32-channel prototype head; yours ends in as many channels as
it has classes. Every tensor of the source whose name and shape match the network is copied;
the rest is skipped and reported. For MONAI's UNet the skipped tensors are those of the last
up-sampling block, whose output is the head; for SwinUNETR the export has no head (``out.*``),
so nothing is skipped and ``out.*`` stays at its initialisation. Anything that points to
another architecture is an error, not a silent partial load: weights of the other spatial
dimension (2D into 3D), or fewer than half of the source's tensors fitting (another width,
depth or ``feature_size``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch
from torch import nn

from .checkpoint import FORMAT as CHECKPOINT_FORMAT
from .export import ENCODER_PREFIX


@dataclass
class LoadReport:
    """What `load_pretrained` did: tensor names loaded, skipped (name -> reason), and the
    network's tensors it did not touch (left at their initial values)."""

    source: str
    loaded: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.source}: {len(self.loaded)} tensors loaded, {len(self.skipped)} "
                 f"skipped, {len(self.missing)} of the network left at initialisation"]
        lines += [f"  skipped {k}: {why}" for k, why in self.skipped.items()]
        if self.missing:
            lines.append(f"  left at initialisation: {', '.join(self.missing[:8])}"
                         + (" ..." if len(self.missing) > 8 else ""))
        return "\n".join(lines)


def read_state(source) -> tuple[dict, str]:
    """(state dict, description) of an export folder (its network.pt), a rasd-pretrain
    checkpoint, a saved state dict (network.pt, encoder.pt, or {"state_dict": ...}), or a
    dict of tensors."""
    if isinstance(source, dict):
        return source, "state dict"
    path = os.fspath(source)
    if os.path.isdir(path):
        meta = os.path.join(path, "export.json")
        name = "network.pt"
        if os.path.isfile(meta):
            with open(meta) as f:
                name = json.load(f).get("files", {}).get("network", name)
        path = os.path.join(path, name)
    if not os.path.isfile(path):
        raise ValueError(f"no pre-trained weights at {path}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(blob, dict) and blob.get("format") == CHECKPOINT_FORMAT:
        blob = blob["model"]
    elif isinstance(blob, dict) and isinstance(blob.get("state_dict"), dict):
        blob = blob["state_dict"]
    if not isinstance(blob, dict) or not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return blob, path


def _align_names(state: dict, own: dict) -> dict:
    """Strip a DataParallel 'module.' prefix; add 'swinViT.' to an encoder-only state dict
    when the network is a SwinUNETR."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if (state and not any(k in own for k in state)
            and any(ENCODER_PREFIX + k in own for k in state)):
        state = {ENCODER_PREFIX + k: v for k, v in state.items()}
    return state


def _spatial_dims(shapes) -> set[int]:
    """Spatial dimensions of the convolution kernels among tensor shapes (rank 4: 2D, 5: 3D)."""
    return {len(s) - 2 for s in shapes if len(s) in (4, 5)}


def load_pretrained(net: nn.Module, source, *, min_fraction: float = 0.5) -> LoadReport:
    """Copy every tensor of `source` that fits `net` by name and shape; report the rest.

    source: a rasd-pretrain export folder, checkpoint, saved state dict, or dict of tensors.
    Raises ValueError when the weights are of another spatial dimension than `net`, or when
    fewer than `min_fraction` of the source's tensors fit (another architecture)."""
    state, where = read_state(source)
    own = net.state_dict()
    state = _align_names(state, own)
    theirs, ours = _spatial_dims(v.shape for v in state.values()), _spatial_dims(
        v.shape for v in own.values())
    if theirs and ours and theirs.isdisjoint(ours):
        raise ValueError(f"{where} holds {sorted(theirs)[0]}D weights, the network is "
                         f"{sorted(ours)[0]}D: build it with spatial_dims={sorted(theirs)[0]}")
    report = LoadReport(source=where)
    fitting = {}
    for k, v in state.items():
        if k not in own:
            report.skipped[k] = "not in the network"
        elif own[k].shape != v.shape:
            report.skipped[k] = (f"shape {list(v.shape)} in the weights, {list(own[k].shape)} "
                                 "in the network")
        else:
            fitting[k] = v
    if len(fitting) < min_fraction * len(state) or not fitting:
        first = list(report.skipped.items())[:3]
        raise ValueError(f"only {len(fitting)} of the {len(state)} tensors in {where} fit this "
                         f"network (e.g. {first}): build it with the pre-training "
                         "hyper-parameters (export.json holds them)")
    net.load_state_dict(fitting, strict=False)
    report.loaded = sorted(fitting)
    report.missing = sorted(k for k in own if k not in fitting)
    return report
