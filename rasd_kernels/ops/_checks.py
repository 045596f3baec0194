"""Argument checks shared by the ops: every message names the argument and what is wrong.

Numbers are taken by their abstract type (numbers.Integral, numbers.Real), so numpy scalars
pass as Python numbers do; bool, which is an Integral too, is refused where a count or a
size is meant. Checks that convert return the plain Python value to pass on.
"""

from __future__ import annotations

import math
import numbers

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


def output(name: str, t: torch.Tensor) -> None:
    """An output written in place: no autograd history may be attached to it."""
    if t.requires_grad:
        raise ValueError(f"{name} requires grad; it is written in place, so pass a tensor "
                         "without autograd (torch.empty(...), or .detach() it)")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")


def disjoint(**tensors: torch.Tensor) -> None:
    """Contiguous tensors written by one call must not share memory (checked in eager mode:
    a traced graph has no addresses)."""
    if torch.compiler.is_compiling():
        return
    spans = [(name, t.data_ptr(), t.data_ptr() + t.numel() * t.element_size())
             for name, t in tensors.items()]
    for i, (a, a0, a1) in enumerate(spans):
        for b, b0, b1 in spans[i + 1:]:
            if a0 < b1 and b0 < a1:
                raise ValueError(f"{a} and {b} overlap in memory; give them separate buffers")


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


def is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def integer(name: str, value, lo: int, hi: int) -> int:
    """value as an int in [lo, hi]."""
    if not is_integer(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def real(name: str, value) -> float:
    """value as a finite float (ints and numpy floats included, bool not)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a finite number, got {type(value).__name__} "
                        f"{value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def spatial_shape(name: str, size) -> tuple[int, ...]:
    """A 2D or 3D spatial shape as a tuple of ints (a bare int is refused: it names no
    number of dimensions)."""
    if isinstance(size, torch.Size):
        size = tuple(size)
    if not isinstance(size, (tuple, list)):
        raise TypeError(f"{name} must be a tuple of 2 or 3 ints, got {type(size).__name__} "
                        f"{size!r}")
    if not all(is_integer(n) for n in size):
        raise TypeError(f"{name} must be a tuple of 2 or 3 ints, got {tuple(size)!r}")
    size = tuple(int(n) for n in size)
    if len(size) not in (2, 3):
        raise ValueError(f"{name} must be 2D or 3D, got {len(size)} spatial dims {size}")
    return size


def spatial(name: str, size: tuple[int, ...], nodes: tuple[int, ...] = ()) -> None:
    if len(size) not in (2, 3):
        raise ValueError(f"{name} must be 2D or 3D, got {len(size)} spatial dims {size}")
    need = max((2, *nodes))
    if min(size) < need:
        raise ValueError(f"{name} {size} is too small: every spatial size must be >= {need} "
                         f"(the largest coarse grid has {need} nodes per axis)")
