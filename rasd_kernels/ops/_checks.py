"""Argument checks shared by the ops: every message names the argument and what is wrong."""

from __future__ import annotations

import torch


def tensor(name: str, t, *, dtype: torch.dtype, dim: int | tuple[int, ...] | None = None,
           contiguous: bool = True) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {t.dtype}")
    dims = (dim,) if isinstance(dim, int) else dim
    if dims is not None and t.dim() not in dims:
        raise ValueError(f"{name} must have {' or '.join(map(str, dims))} dimensions, "
                         f"got shape {tuple(t.shape)}")
    if contiguous and not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous (call .contiguous() on it)")


def shape(name: str, t: torch.Tensor, expected: tuple[int, ...]) -> None:
    if tuple(t.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(t.shape)}")


def same_device(**tensors: torch.Tensor) -> torch.device:
    devices = {name: t.device for name, t in tensors.items()}
    first = next(iter(devices.values()))
    for name, dev in devices.items():
        if dev != first:
            raise ValueError(f"all tensors must be on one device; {name} is on {dev}, "
                             f"{next(iter(devices))} on {first}")
    return first


def integer(name: str, value, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")


def spatial(name: str, size: tuple[int, ...], nodes: tuple[int, ...] = ()) -> None:
    if len(size) not in (2, 3):
        raise ValueError(f"{name} must be 2D or 3D, got {len(size)} spatial dims {size}")
    need = max((2, *nodes))
    if min(size) < need:
        raise ValueError(f"{name} {size} is too small: every spatial size must be >= {need} "
                         f"(the largest coarse grid has {need} nodes per axis)")
