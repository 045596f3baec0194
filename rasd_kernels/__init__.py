"""rasd_kernels: RaSD synthetic pre-training data (label maps and images) at kernel speed."""

from . import backends, config, ops, streams
from .config import PRESETS, SynthesisConfig, preset, rasd2d, rasd3d
from .synthesize import synthesize, synthesize_into

__version__ = "0.1.0"

__all__ = ["PRESETS", "SynthesisConfig", "backends", "config", "ops", "preset", "rasd2d",
           "rasd3d", "streams", "synthesize", "synthesize_into", "__version__"]
