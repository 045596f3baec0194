"""Optional dependencies of the driver (the `train` extra), imported on first use."""

from __future__ import annotations

import importlib

# import name -> distribution name
_PACKAGES = {"monai": "monai", "yaml": "pyyaml", "tqdm": "tqdm", "nibabel": "nibabel",
             "matplotlib": "matplotlib"}

INSTALL_HINT = "pip install 'rasd_kernels[train]'"


class MissingDependency(ImportError):
    """An optional package of the `train` extra is not installed."""


def require(module: str):
    """Import `module` or raise MissingDependency telling how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise MissingDependency(
            f"{_PACKAGES.get(top, top)} is needed here but cannot be imported ({exc}); "
            f"install the pre-training extras with: {INSTALL_HINT}") from None
