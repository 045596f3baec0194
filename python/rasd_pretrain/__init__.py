"""rasd_pretrain: RaSD pre-training driver on freshly synthesised rasd_kernels data.

The loss (`rasd_loss`), a backbone registry (`register_model`, `build_model`), the training
loop (`train`), and the export of encoder weights for MONAI's SwinUNETR (`export_checkpoint`), and
`load_pretrained`, which loads an export into your own MONAI UNet or SwinUNETR. MONAI and
the other training extras are imported only when needed:
``pip install 'rasd_kernels[train]'``.
"""

from .config import PRESETS, PretrainConfig
from .data import SyntheticBatches
from .export import export_checkpoint
from .loss import LossTerms, RaSDLoss, consistency_loss, rasd_loss
from .models import available_models, build_model, register_model
from .trainer import RunResult, train
from .weights import LoadReport, load_pretrained

__all__ = ["PRESETS", "LoadReport", "LossTerms", "PretrainConfig", "RaSDLoss", "RunResult",
           "SyntheticBatches", "available_models", "build_model", "consistency_loss",
           "export_checkpoint", "load_pretrained", "rasd_loss", "register_model", "train"]
