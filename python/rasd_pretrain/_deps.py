"""Optional dependencies of the driver (the `train` and `nnunet` extras), imported on first use."""

from __future__ import annotations

import importlib

# import name -> distribution name
_PACKAGES = {"monai": "monai", "yaml": "pyyaml", "tqdm": "tqdm", "nibabel": "nibabel",
             "matplotlib": "matplotlib", "nnunetv2": "nnunetv2",
             "dynamic_network_architectures": "dynamic-network-architectures",
             "SimpleITK": "SimpleITK"}
# import name -> the extra that installs it (default: train)
_EXTRAS = {"nnunetv2": "nnunet", "dynamic_network_architectures": "nnunet",
           "SimpleITK": "nnunet"}

INSTALL_HINT = "pip install 'rasd_kernels[train]'"


class MissingDependency(ImportError):
    """An optional package of an extra (`train`, `nnunet`) is not installed."""


def require(module: str):
    """Import `module` or raise MissingDependency telling how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRAS.get(top, "train")
        raise MissingDependency(
            f"{_PACKAGES.get(top, top)} is needed here but cannot be imported ({exc}); "
            f"install the {extra!r} extra with: pip install 'rasd_kernels[{extra}]'") from None
