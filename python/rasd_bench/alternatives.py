"""The RaSD appearance chain built from TorchIO and from MONAI transforms, for comparison.

Both start from label maps they are handed (made once by rasd_kernels, outside the timing):
neither library draws RaSD anatomy, so their whole chain is both their `appearance` and their
`full` pipeline (one measurement reported under both names), and a ratio against our `full`
(which also draws the labels) favours them.

Chain, in the order of the method (SPEC 3), one sample at a time as both libraries work:

  stage       TorchIO                         MONAI
  intensity   RandomLabelsToImage             GMM intensity from labels (below: MONAI has none)
  bias_field  RandomBiasField                 RandBiasField
  noise       RandomNoise                     RandGaussianNoise
  blur        RandomBlur                      RandGaussianSmooth
  normalize   RescaleIntensity((0, 1))        ScaleIntensity(0, 1)
  gamma       RandomGamma                     RandAdjustContrast

Ranges follow the SynthesisConfig where the libraries take the same quantity (label means,
texture std, noise std, blur sigma, gamma). Their bias fields are polynomials of degree 3
rather than splines; coefficients of at most BIAS_COEFFICIENT give log-bias amplitudes of a
few tenths, the range of RaSD's. The cost of a transform does not depend on these values.
Every stage runs on the CPU (TorchIO works on CPU tensors; MONAI runs where its input is and
gets CPU labels here).
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Callable

import torch

from rasd_kernels.config import SynthesisConfig

from .timing import Case, CorrectnessError

TOOLS = ("torchio", "monai")
STAGES = ("intensity", "bias_field", "noise", "blur", "normalize", "gamma", "appearance", "full")
BIAS_COEFFICIENT = 0.1
RANGE_TOLERANCE = 1e-4


def unavailable_reason(tool: str) -> str | None:
    """None if the library imports here, else why not."""
    if tool not in TOOLS:
        return f"unknown alternative {tool!r}; choose from {TOOLS}"
    try:
        importlib.import_module(tool)
    except ImportError as exc:
        return f"{tool} is not installed ({exc}); pip install 'rasd_kernels[bench]'"
    return None


# ---- TorchIO -----------------------------------------------------------------------------

def torchio_steps(config: SynthesisConfig, d: int) -> list[tuple[str, Callable]]:
    import torchio as tio

    blur = (config.blur_sigma_min, config.blur_sigma_max)
    # TorchIO images are 3D; a 2D image is [C, H, W, 1] and is not blurred along the last axis.
    blur_std = blur if d == 3 else (*blur, *blur, 0.0, 0.0)
    return [
        ("intensity", tio.RandomLabelsToImage(
            label_key="label", image_key="image",
            default_mean=(config.mean_min, config.mean_max),
            default_std=(config.texture_std_min, config.texture_std_max))),
        ("bias_field", tio.RandomBiasField(coefficients=BIAS_COEFFICIENT, order=3)),
        ("noise", tio.RandomNoise(std=(config.noise_std_min, config.noise_std_max))),
        ("blur", tio.RandomBlur(std=blur_std)),
        ("normalize", tio.RescaleIntensity(out_min_max=(0.0, 1.0))),
        ("gamma", tio.RandomGamma(log_gamma=(math.log(config.gamma_min),
                                             math.log(config.gamma_max)))),
    ]


def torchio_inputs(labels: torch.Tensor) -> list:
    """One tio.Subject per sample holding its label map ([1, *S], plus a unit axis in 2D)."""
    import torchio as tio

    subjects = []
    for y in labels:
        data = y[None] if y.dim() == 3 else y[None, ..., None]
        subjects.append(tio.Subject(label=tio.LabelMap(tensor=data)))
    return subjects


def torchio_image(subject) -> torch.Tensor:
    return subject["image"].data


# ---- MONAI -------------------------------------------------------------------------------

class GmmIntensity:
    """Labels [1, *S] -> image [1, *S]: one random mean (and texture std) per label.

    MONAI has no transform drawing intensities from a label map; these few lines are the
    intensity model of SynthSeg and RaSD, with MONAI's convention of a seedable numpy state.
    """

    def __init__(self, num_labels: int, config: SynthesisConfig, seed: int):
        import numpy as np

        self.num_labels, self.config = num_labels, config
        self.rng = np.random.default_rng(seed)

    def __call__(self, labels: torch.Tensor) -> torch.Tensor:
        c = self.config
        mean = torch.from_numpy(self.rng.uniform(c.mean_min, c.mean_max, self.num_labels))
        y = torch.as_tensor(labels).long()
        x = mean.float()[y]
        if c.texture_enabled:
            std = torch.from_numpy(self.rng.uniform(c.texture_std_min, c.texture_std_max,
                                                    self.num_labels)).float()
            x = x + std[y] * torch.randn(x.shape)
        return x


def monai_steps(config: SynthesisConfig, num_labels: int, seed: int) -> list[tuple[str, Callable]]:
    import monai.transforms as mt

    blur = (config.blur_sigma_min, config.blur_sigma_max)
    steps = [
        ("intensity", GmmIntensity(num_labels, config, seed)),
        ("bias_field", mt.RandBiasField(degree=3, coeff_range=(0.0, BIAS_COEFFICIENT),
                                        prob=1.0)),
        # MONAI draws the noise std uniformly in [0, std].
        ("noise", mt.RandGaussianNoise(prob=1.0, std=config.noise_std_max)),
        ("blur", mt.RandGaussianSmooth(sigma_x=blur, sigma_y=blur, sigma_z=blur, prob=1.0)),
        ("normalize", mt.ScaleIntensity(minv=0.0, maxv=1.0)),
        ("gamma", mt.RandAdjustContrast(prob=1.0, gamma=(config.gamma_min, config.gamma_max))),
    ]
    for i, (_, transform) in enumerate(steps):
        if hasattr(transform, "set_random_state"):
            transform.set_random_state(seed + i)
    return steps


def monai_inputs(labels: torch.Tensor) -> list[torch.Tensor]:
    """Channel-first label maps [1, *S], one per sample."""
    return [y[None] for y in labels]


def monai_image(x) -> torch.Tensor:
    return torch.as_tensor(x)


# ---- cases -------------------------------------------------------------------------------

def chain(steps: list[Callable]) -> Callable:
    def apply(x):
        for step in steps:
            x = step(x)
        return x
    return apply


def check_images(images: list[torch.Tensor], batch: int, shape, *, unit_range: bool) -> str:
    """Every sample's image has shape [1, *shape] (2D: an extra unit axis allowed), is finite,
    and lies in [0, 1] if `unit_range`; raises CorrectnessError otherwise."""
    if len(images) != batch:
        raise CorrectnessError(f"expected {batch} images, got {len(images)}")
    for b, x in enumerate(images):
        x = torch.as_tensor(x)
        dims = tuple(x.shape)
        if dims not in ((1, *shape), (1, *shape, 1)):
            raise CorrectnessError(f"image {b} has shape {dims}, expected (1, {shape})")
        if not bool(torch.isfinite(x).all()):
            raise CorrectnessError(f"image {b} has non-finite values")
        if unit_range and not (float(x.min()) >= -RANGE_TOLERANCE
                               and float(x.max()) <= 1 + RANGE_TOLERANCE):
            raise CorrectnessError(f"image {b} spans [{float(x.min())}, {float(x.max())}], "
                                   "outside [0, 1]")
    return f"{batch} images of shape {tuple(shape)}, finite" + (", in [0, 1]" if unit_range
                                                                  else "")


def cases(tool: str, labels: torch.Tensor, num_labels: int, config: SynthesisConfig,
          seed: int, stages) -> list[Case]:
    """The requested stages of `tool` on these label maps [B, *S] (uint8, any device).

    Inputs of each stage are prepared outside the timing by running the chain up to it once.
    """
    reason = unavailable_reason(tool)
    if reason is not None:
        raise RuntimeError(reason)
    labels = labels.cpu()
    batch, shape = labels.shape[0], tuple(labels.shape[1:])
    if tool == "torchio":
        torch.manual_seed(seed)   # TorchIO draws from torch's global generator
        steps, inputs, image = torchio_steps(config, len(shape)), torchio_inputs(labels), \
            torchio_image
    else:
        steps, inputs, image = monai_steps(config, num_labels, seed), monai_inputs(labels), \
            monai_image
    out = []
    stage_inputs = inputs
    for name, step in steps:
        if name in stages:
            out.append(_case(tool, name, [step], stage_inputs, image, batch, shape))
        stage_inputs = [step(x) for x in stage_inputs]
    # From given labels the whole chain is both the appearance and the full pipeline.
    whole = [s for s in ("full", "appearance") if s in stages]
    if whole:
        out.append(_case(tool, whole[0], [step for _, step in steps], inputs, image, batch,
                         shape, note="labels given", aliases=tuple(whole[1:])))
    return out


def _case(tool, stage, steps, inputs, image, batch, shape, note="", aliases=()) -> Case:
    apply = chain(steps)

    def run() -> list[Any]:
        return [apply(x) for x in inputs]

    def check(outputs) -> str:
        return check_images([image(o) for o in outputs], batch, shape,
                            unit_range=stage in ("full", "appearance", "normalize", "gamma"))

    return Case(tool=tool, stage=stage, batch=batch, device=torch.device("cpu"), run=run,
                check=check, note=note, aliases=aliases)
