"""Every random range of RaSD synthesis in one validated dataclass.

A config describes *what* to draw (ranges, grid sizes, shape mode); the shape, the number of
labels and the batch are arguments of `synthesize`, so one config serves every size. Fields
left at ``None`` are derived from the image size when the config is resolved (``warp_std_max``
defaults to N / 16 voxels, N the largest spatial size).

Validation happens on construction: a bad value raises ``ValueError`` naming the field, never
a silent clamp.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from types import MappingProxyType

SHAPE_MODES = ("perlin", "blobs")

# Coarse grid limits of every backend (csrc/common/defs.h; a test compares them).
MAX_GRID_SCALES = 6
MAX_GRID_NODES = 1023

# Cubic B-spline control-point spacing of the bias field, in units of the published Gaussian
# blur FWHM. White noise blurred by a Gaussian of FWHM w (sigma = w / 2.355) has a Gaussian
# autocorrelation of standard deviation sqrt(2) sigma = 0.6006 w, which falls to one half at a
# lag of 0.6006 w * sqrt(2 ln 2) = 0.7071 w. A cubic B-spline with i.i.d. coefficients at
# spacing h, averaged over its phase, has the autocorrelation B7(r / h) / B7(0) of the centred
# degree-7 B-spline (B3 convolved with itself), which falls to one half at r = 0.9901 h.
# Equal half-correlation lags give h = 0.7071 / 0.9901 = 0.714 w. Measured against the
# published construction (tests/test_fidelity.py): the paired ratio of half-correlation lags,
# spline over blurred noise at equal FWHM, is 0.99 +- 0.01 at 512^2, 0.97 +- 0.02 at 128^3.
BIAS_SPACING_PER_FWHM = 0.714


def _number(name: str, v) -> float:
    """A finite real (numpy scalars included; bool refused) as a float."""
    if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v):
        raise ValueError(f"config.{name} must be a finite number, got {v!r}")
    return float(v)


def _range_ok(config, name: str, *, min_value: float | None = None,
              max_value: float | None = None) -> None:
    """Check config.<name>_min / _max (stored back as floats)."""
    lo = _number(f"{name}_min", getattr(config, f"{name}_min"))
    hi = _number(f"{name}_max", getattr(config, f"{name}_max"))
    object.__setattr__(config, f"{name}_min", lo)
    object.__setattr__(config, f"{name}_max", hi)
    if lo > hi:
        raise ValueError(f"config.{name}_min ({lo}) must not exceed config.{name}_max ({hi})")
    if min_value is not None and lo < min_value:
        raise ValueError(f"config.{name}_min must be >= {min_value}, got {lo}")
    if max_value is not None and hi > max_value:
        raise ValueError(f"config.{name}_max must be <= {max_value}, got {hi}")


def _amplitude_ok(config, name: str) -> None:
    """A non-negative single bound config.<name> (stored back as a float)."""
    value = _number(name, getattr(config, name))
    if value < 0:
        raise ValueError(f"config.{name} must be >= 0, got {value}")
    object.__setattr__(config, name, value)


@dataclass(frozen=True)
class SynthesisConfig:
    """Ranges of every random quantity of the RaSD generator (SPEC sections 2 and 3)."""

    # Structure (section 2).
    shapes: str = "perlin"
    field_nodes: tuple[int, ...] = (8, 4)
    field_std_max: float = 1.0
    warp_nodes: tuple[int, ...] = (16, 8, 4)
    warp_std_max: float | None = None          # voxels; None -> N / 16
    blob_scale_min: float = 0.08               # blob standard deviation, fraction of the size
    blob_scale_max: float = 0.3
    blob_weight_min: float = 0.5
    blob_weight_max: float = 1.0

    # Appearance (section 3).
    channels: int = 1
    mean_min: float = 0.0
    mean_max: float = 1.0
    texture_std_min: float = 0.0
    texture_std_max: float = 0.0
    bias_std_min: float = 0.01
    bias_std_max: float = 0.1
    bias_fwhm_min: float = 16.0                # voxels
    bias_fwhm_max: float = 32.0
    noise_std_min: float = 0.05
    noise_std_max: float = 0.4
    blur_sigma_min: float = 0.0                # voxels
    blur_sigma_max: float = 1.0
    gamma_min: float = 0.5
    gamma_max: float = 1.5

    def __post_init__(self) -> None:
        if self.shapes not in SHAPE_MODES:
            raise ValueError(f"config.shapes must be one of {SHAPE_MODES}, got {self.shapes!r}")
        for name in ("field_nodes", "warp_nodes"):
            nodes = getattr(self, name)
            if (not isinstance(nodes, (tuple, list)) or not nodes
                    or any(not isinstance(n, numbers.Integral) or isinstance(n, bool)
                           or not 2 <= n <= MAX_GRID_NODES for n in nodes)):
                raise ValueError(f"config.{name} must be a non-empty tuple of ints in "
                                 f"[2, {MAX_GRID_NODES}], got {nodes!r}")
            if len(nodes) > MAX_GRID_SCALES:
                raise ValueError(f"config.{name} has {len(nodes)} scales; at most "
                                 f"{MAX_GRID_SCALES} are supported")
            object.__setattr__(self, name, tuple(int(n) for n in nodes))
        if (not isinstance(self.channels, numbers.Integral) or isinstance(self.channels, bool)
                or self.channels < 1):
            raise ValueError(f"config.channels must be an int >= 1, got {self.channels!r}")
        object.__setattr__(self, "channels", int(self.channels))
        _amplitude_ok(self, "field_std_max")
        if self.warp_std_max is not None:
            _amplitude_ok(self, "warp_std_max")
        _range_ok(self, "blob_scale", min_value=1e-3)
        # Weights enter the scores as log w in float32 after a float32 draw in [min, max].
        _range_ok(self, "blob_weight", min_value=1e-6, max_value=1e30)
        _range_ok(self, "mean")
        _range_ok(self, "texture_std", min_value=0.0)
        _range_ok(self, "bias_std", min_value=0.0, max_value=5.0)
        _range_ok(self, "bias_fwhm", min_value=1.0)
        _range_ok(self, "noise_std", min_value=0.0)
        _range_ok(self, "blur_sigma", min_value=0.0, max_value=4.0)
        _range_ok(self, "gamma", min_value=1e-3, max_value=10.0)

    def replace(self, **changes) -> "SynthesisConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def warp_std_for(self, shape: tuple[int, ...]) -> float:
        """Largest warp amplitude in voxels for this image size."""
        if self.warp_std_max is not None:
            return float(self.warp_std_max)
        return max(shape) / 16.0

    def bias_nodes_for(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Control points per axis of the bias spline, enough for the finest spacing.

        Voxel p sits at t = p / h + offset + 1 with offset in [0, 1) and needs nodes
        floor(t) - 1 .. floor(t) + 2, so the last voxel reaches node floor((N - 1) / h) + 4.
        """
        h_min = BIAS_SPACING_PER_FWHM * self.bias_fwhm_min
        return tuple(int(math.floor((n - 1) / h_min)) + 5 for n in shape)

    @property
    def texture_enabled(self) -> bool:
        return self.texture_std_max > 0.0


# The published settings: 128^3 with 8 labels, 512^2 with 16 labels. Read-only: a preset is
# shared by every caller (configs are frozen; use config.replace for a variant).
PRESETS = MappingProxyType({
    "rasd3d": ((128, 128, 128), 8, SynthesisConfig()),
    "rasd2d": ((512, 512), 16, SynthesisConfig()),
})


def preset(name: str) -> tuple[tuple[int, ...], int, SynthesisConfig]:
    """(shape, num_labels, config) of a named preset."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def rasd3d() -> SynthesisConfig:
    return PRESETS["rasd3d"][2]


def rasd2d() -> SynthesisConfig:
    return PRESETS["rasd2d"][2]
