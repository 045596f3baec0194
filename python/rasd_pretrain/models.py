"""Backbone registry: any nn.Module mapping [B, C, *S] -> [B, E, *S] plugs in.

A factory is called as ``factory(spatial_dims=, in_channels=, out_channels=, shape=, **kwargs)``
and returns the module. Built in: ``swinunetr`` and ``unet`` (MONAI), and ``convnet`` (plain
PyTorch, a tiny baseline for tests), and ``nnunet`` (the network of an nnU-Net plans file, see
`rasd_pretrain.nnunet`). Register your own with
``@register_model("name")``, or name it on the command line as ``package.module:function``
(imported on use), or pass a built module to ``rasd_pretrain.train(config, model=...)``.
"""

from __future__ import annotations

import importlib
import inspect
import math
from typing import Callable

import torch
from torch import nn

from ._deps import require

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}


def register_model(name: str, factory: ModelFactory | None = None):
    """Register `factory` under `name` (usable as a decorator)."""
    def add(f: ModelFactory) -> ModelFactory:
        _REGISTRY[name] = f
        return f
    return add(factory) if factory is not None else add


# Backbones of optional extras, registered when their module is first imported.
_LAZY = {"nnunet": "rasd_pretrain.nnunet"}


def available_models() -> list[str]:
    return sorted({*_REGISTRY, *_LAZY})


def _factory(name: str) -> ModelFactory:
    if name in _LAZY and name not in _REGISTRY:
        importlib.import_module(_LAZY[name])
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"model {name!r}: cannot import {module_name!r} ({exc})") from None
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise ValueError(f"model {name!r}: {module_name!r} has no callable {attr!r}")
        return factory
    raise ValueError(f"unknown model {name!r}; choose one of {available_models()} or give "
                     "'package.module:factory'")


def build_model(name: str, *, spatial_dims: int, in_channels: int, out_channels: int,
                shape: tuple[int, ...], **kwargs) -> nn.Module:
    """Build a registered (or 'module:factory') backbone; errors name the model and arguments."""
    factory = _factory(name)
    try:
        model = factory(spatial_dims=spatial_dims, in_channels=in_channels,
                        out_channels=out_channels, shape=tuple(shape), **kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ValueError(f"cannot build model {name!r} with arguments {kwargs}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model factory {name!r} returned {type(model).__name__}, "
                         "not a torch.nn.Module")
    return model


def check_output(output: torch.Tensor, batch: int, embed_dim: int, shape) -> None:
    """The backbone contract: [B, C, *S] in, [B, E, *S] out."""
    expected = (batch, embed_dim, *shape)
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != expected:
        got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(f"the model must map [B, C, *S] to [B, E, *S] = {expected}, got {got}")


def _divisible(name: str, shape, factor: int) -> None:
    bad = [n for n in shape if n % factor]
    if bad:
        raise ValueError(f"{name} needs every spatial size divisible by {factor}, got "
                         f"{list(shape)}")


@register_model("swinunetr")
def swinunetr(*, spatial_dims: int, in_channels: int, out_channels: int, shape,
              feature_size: int = 48, **kwargs) -> nn.Module:
    """MONAI SwinUNETR (published 3D backbone: feature_size 48, 32 output channels)."""
    nets = require("monai.networks.nets")
    # Patch size 2 then four 2x mergings: 32x in total.
    _divisible("swinunetr", shape, 32)
    if "img_size" in inspect.signature(nets.SwinUNETR.__init__).parameters:
        kwargs.setdefault("img_size", tuple(shape))      # MONAI < 1.5 still requires it
    return nets.SwinUNETR(in_channels=in_channels, out_channels=out_channels,
                          feature_size=feature_size, spatial_dims=spatial_dims, **kwargs)


@register_model("unet")
def unet(*, spatial_dims: int, in_channels: int, out_channels: int, shape,
         channels=(32, 64, 128, 256), strides=(2, 2, 2), num_res_units: int = 2,
         **kwargs) -> nn.Module:
    """MONAI UNet (residual units, instance norm)."""
    nets = require("monai.networks.nets")
    _divisible("unet", shape, math.prod(strides))
    return nets.UNet(spatial_dims=spatial_dims, in_channels=in_channels,
                     out_channels=out_channels, channels=tuple(channels),
                     strides=tuple(strides), num_res_units=num_res_units, **kwargs)


class ConvNet(nn.Module):
    """Plain PyTorch fully convolutional net (no MONAI): conv-GroupNorm-GELU blocks at full
    resolution. A tiny baseline for tests and smoke runs, not a serious backbone."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int,
                 width: int = 16, depth: int = 3) -> None:
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        layers, c = [], in_channels
        for _ in range(depth):
            layers += [conv(c, width, 3, padding=1), nn.GroupNorm(min(4, width), width),
                       nn.GELU()]
            c = width
        layers.append(conv(c, out_channels, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_model("convnet")
def convnet(*, spatial_dims: int, in_channels: int, out_channels: int, shape,
            width: int = 16, depth: int = 3) -> nn.Module:
    """`ConvNet` (needs no MONAI)."""
    return ConvNet(spatial_dims, in_channels, out_channels, width, depth)
