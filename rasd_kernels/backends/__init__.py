"""Backend registry: which implementations exist here and which one "auto" picks.

Every backend module exposes the same five functions with the same signatures as
rasd_kernels.reference: philox_fill, gmm_shapes, bias_field, appearance, spline_maximum.
"""

from __future__ import annotations

import importlib
import os
import warnings

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


def _source_tree_hint() -> str:
    """Why the compiled module may be missing although it was installed."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    root = os.path.dirname(package)
    if os.path.exists(os.path.join(root, "pyproject.toml")) and os.path.isdir(
            os.path.join(root, "csrc")):
        return (f" rasd_kernels was imported from the source tree ({package}), which shadows "
                "the installed package: run from another folder, or build the module in place "
                "(README, Development).")
    return " Install it with `pip install .` (it compiles the module)."


def _warn_reference_fallback() -> None:
    # Shown once per process (warnings' default filter: once per location).
    warnings.warn(
        "backend='auto' runs the float64 reference on the CPU, about 100x slower than the C++ "
        f"kernels, because {unavailable_reason('cpu')}.{_source_tree_hint()} Pass "
        "backend='reference' to choose it knowingly.", RuntimeWarning, stacklevel=2)


def cpu_threads() -> int:
    """Threads of the CPU kernels (1 where they are not built)."""
    if unavailable_reason("cpu") is not None:
        return 1
    return _load("cpu").get_num_threads()


@torch.compiler.assume_constant_result
def resolve(backend: str, device: torch.device) -> str:
    """The concrete backend for tensors on `device` ("auto" picks the fastest one built)."""
    if backend == "auto":
        order = ("cuda", "triton") if device.type == "cuda" else ("cpu", "reference")
        for candidate in order:
            if unavailable_reason(candidate) is None:
                if candidate == "reference":
                    _warn_reference_fallback()
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
