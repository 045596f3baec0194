"""Backend registry: which implementations exist here and which one "auto" picks.

Every backend module exposes the same five functions with the same signatures as
rasd_kernels.reference: philox_fill, gmm_shapes, bias_field, appearance, spline_maximum.
"""

from __future__ import annotations

import importlib
import os

import torch

BACKENDS = ("reference", "cpu", "triton", "cuda")
OPS = ("philox_fill", "gmm_shapes", "bias_field", "appearance", "spline_maximum")
_MODULES = {
    "reference": "rasd_kernels.reference.backend",
    "cpu": "rasd_kernels.backends.cpu",
    "triton": "rasd_kernels.triton",
    "cuda": "rasd_kernels.backends.cuda",
}


def _load(backend: str):
    return importlib.import_module(_MODULES[backend])


def unavailable_reason(backend: str) -> str | None:
    """None if the backend can run here, else why not (shown in errors)."""
    if backend not in BACKENDS:
        return f"unknown backend {backend!r}; choose one of {BACKENDS} or 'auto'"
    try:
        module = _load(backend)
    except ImportError as exc:
        return f"backend {backend!r} cannot be imported: {exc}"
    missing = [op for op in OPS if not hasattr(module, op)]
    if missing:
        return f"backend {backend!r} does not implement {missing}"
    check = getattr(module, "unavailable_reason", None)
    return check() if check is not None else None


def available() -> list[str]:
    return [b for b in BACKENDS if unavailable_reason(b) is None]


def interpreting_triton() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@torch.compiler.assume_constant_result
def resolve(backend: str, device: torch.device) -> str:
    """The concrete backend for tensors on `device` ("auto" picks the fastest one built)."""
    if backend == "auto":
        order = ("cuda", "triton") if device.type == "cuda" else ("cpu", "reference")
        for candidate in order:
            if unavailable_reason(candidate) is None:
                return candidate
        raise RuntimeError(f"no backend can run on {device}: "
                           + "; ".join(unavailable_reason(c) for c in order))
    reason = unavailable_reason(backend)
    if reason is not None:
        raise RuntimeError(reason)
    wants_cuda = backend in ("cuda", "triton") and not (backend == "triton"
                                                        and interpreting_triton())
    if wants_cuda and device.type != "cuda":
        raise ValueError(f"backend {backend!r} needs CUDA tensors, got tensors on {device}")
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(f"backend 'cpu' needs CPU tensors, got tensors on {device}")
    return backend


def implementation(backend: str, op: str):
    return getattr(_load(backend), op)
