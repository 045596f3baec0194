"""Export pre-trained weights in the layouts MONAI's SwinUNETR loads.

From a SwinUNETR checkpoint, `export` writes into a folder:

* ``encoder.pt``: the Swin transformer encoder, keys relative to ``SwinUNETR.swinViT``;
  ``net.swinViT.load_state_dict(torch.load(p), strict=True)`` on a SwinUNETR built with the
  same hyper-parameters (any number of output channels).
* ``encoder_load_from.pt``: the same weights as ``{"state_dict": {"module.<key>": ...}}`` with
  the MLP named ``fc1``/``fc2``, the layout ``SwinUNETR.load_from`` reads (MONAI's
  self-supervised Swin weights use it).
* ``network.pt``: the whole network without its output head (``out.*``);
  ``net.load_state_dict(torch.load(p), strict=False)`` then reports only ``out.*`` missing.
* ``export.json``: the hyper-parameters to rebuild the network, and the checkpoint step.

Other backbones get ``network.pt`` (the full state dict) and ``export.json``; an nnU-Net
network (``--nnunet-plans``) gets ``nnunet_pretrained.pth`` (see `rasd_pretrain.nnunet`).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict

import torch

ENCODER_PREFIX = "swinViT."
HEAD_PREFIX = "out."


def encoder_state_dict(model_state: dict) -> OrderedDict:
    """The swinViT.* entries with the prefix removed (ValueError if there are none)."""
    enc = OrderedDict((k[len(ENCODER_PREFIX):], v.detach().clone())
                      for k, v in model_state.items() if k.startswith(ENCODER_PREFIX))
    if not enc:
        raise ValueError("the model has no 'swinViT.*' weights: encoder export needs a "
                         "SwinUNETR backbone")
    return enc


def load_from_layout(encoder: dict) -> dict:
    """`encoder_state_dict` in the layout of SwinUNETR.load_from."""
    def rename(k: str) -> str:
        return "module." + k.replace(".mlp.linear1.", ".mlp.fc1.").replace(".mlp.linear2.",
                                                                            ".mlp.fc2.")
    return {"state_dict": OrderedDict((rename(k), v) for k, v in encoder.items())}


def _is_swinunetr(model_state: dict) -> bool:
    return any(k.startswith(ENCODER_PREFIX) for k in model_state)


def export(model_state: dict, config: dict, step: int, out_dir: str) -> dict[str, str]:
    """Write the export files of one model state; returns {name: path}."""
    if config.get("model") == "nnunet":    # the file nnUNetv2_train -pretrained_weights loads
        from .nnunet import export_weights
        return export_weights(model_state, config, step, out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths: dict[str, str] = {}
    swin = _is_swinunetr(model_state)
    if swin:
        enc = encoder_state_dict(model_state)
        paths["encoder"] = os.path.join(out_dir, "encoder.pt")
        torch.save(enc, paths["encoder"])
        paths["encoder_load_from"] = os.path.join(out_dir, "encoder_load_from.pt")
        torch.save(load_from_layout(enc), paths["encoder_load_from"])
        body = OrderedDict((k, v) for k, v in model_state.items()
                           if not k.startswith(HEAD_PREFIX))
    else:
        body = OrderedDict(model_state)
    paths["network"] = os.path.join(out_dir, "network.pt")
    torch.save(body, paths["network"])
    meta = {
        "model": config["model"],
        "spatial_dims": len(config["shape"]),
        "in_channels": int(config.get("synthesis", {}).get("channels", 1)),
        "pretrain_out_channels": config["embed_dim"],
        "model_kwargs": config["model_kwargs"],
        "pretrain_shape": config["shape"],
        "step": step,
        "files": {k: os.path.basename(v) for k, v in paths.items()},
    }
    if swin:
        meta["encoder_keys"] = "SwinUNETR.swinViT state dict (strict=True)"
    paths["meta"] = os.path.join(out_dir, "export.json")
    with open(paths["meta"], "w") as f:
        json.dump(meta, f, indent=2)
    return paths


def export_checkpoint(checkpoint_path: str, out_dir: str) -> dict[str, str]:
    from . import checkpoint
    payload = checkpoint.load(checkpoint_path)
    return export(payload["model"], payload["config"], payload["step"], out_dir)
