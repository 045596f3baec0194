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
BORDER_MODES = ("edge", "zeros")

# The widest Gaussian blur of every backend (radius round(3 sigma) = 12 voxels).
MAX_BLUR_SIGMA = 4.0
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def psf_sigma(voxel: float) -> float:
    """Gaussian point-spread function of a voxel of size `voxel`: FWHM = voxel, where a voxel
    of size 1 (the image's own) adds no blur."""
    return math.sqrt(max(voxel * voxel - 1.0, 0.0)) / FWHM_PER_SIGMA

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

    # Acquisition (section 9), all off by default as published. Per appearance, each option
    # fires with its probability. Thick slices: along one axis drawn from thick_slice_axes,
    # keep every s-th slice (s an int drawn in [min, max], phase drawn in [0, s)) and fill the
    # others back by linear interpolation. Low resolution: along each axis of lowres_axes, a
    # voxel size v drawn in [min, max] (in image voxels): blur with a Gaussian point-spread
    # function of FWHM v, sample every v voxels (random phase) and interpolate back linearly.
    # Background clearing: label 0 becomes exactly 0 in the final image. Border: "edge"
    # (a warped position outside the volume reads the field's border value) or "zeros" (the
    # published construction: the fields are zero outside, reached linearly within a voxel).
    border: str = "edge"
    thick_slice_prob: float = 0.0
    thick_slice_stride_min: int = 2
    thick_slice_stride_max: int = 6
    thick_slice_axes: tuple[int, ...] = (0,)
    lowres_prob: float = 0.0
    lowres_voxel_min: float = 1.0
    lowres_voxel_max: float = 4.0
    lowres_axes: tuple[int, ...] = (0, 1, 2)
    clear_background_prob: float = 0.0

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
        _range_ok(self, "blur_sigma", min_value=0.0, max_value=MAX_BLUR_SIGMA)
        _range_ok(self, "gamma", min_value=1e-3, max_value=10.0)
        self._check_acquisition()

    def _check_acquisition(self) -> None:
        if self.border not in BORDER_MODES:
            raise ValueError(f"config.border must be one of {BORDER_MODES}, got {self.border!r}")
        if self.border == "zeros" and self.shapes != "perlin":
            raise ValueError("config.border='zeros' applies to shapes='perlin' (blob scores are "
                             "not resampled fields)")
        for name in ("thick_slice_prob", "lowres_prob", "clear_background_prob"):
            value = _number(name, getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"config.{name} must be in [0, 1], got {value}")
            object.__setattr__(self, name, value)
        lo, hi = self.thick_slice_stride_min, self.thick_slice_stride_max
        for which, v in (("min", lo), ("max", hi)):
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or not 1 <= v <= 64:
                raise ValueError(f"config.thick_slice_stride_{which} must be an int in [1, 64], "
                                 f"got {v!r}")
        if lo > hi:
            raise ValueError(f"config.thick_slice_stride_min ({lo}) must not exceed "
                             f"config.thick_slice_stride_max ({hi})")
        object.__setattr__(self, "thick_slice_stride_min", int(lo))
        object.__setattr__(self, "thick_slice_stride_max", int(hi))
        _range_ok(self, "lowres_voxel", min_value=1.0, max_value=64.0)
        for name in ("thick_slice_axes", "lowres_axes"):
            axes = getattr(self, name)
            if (not isinstance(axes, (tuple, list)) or not axes or len(set(axes)) != len(axes)
                    or any(not isinstance(a, numbers.Integral) or isinstance(a, bool)
                           or not 0 <= a <= 2 for a in axes)):
                raise ValueError(f"config.{name} must be a non-empty tuple of distinct spatial "
                                 f"axes in 0, 1, 2, got {axes!r}")
            object.__setattr__(self, name, tuple(int(a) for a in axes))
        if self.lowres_prob > 0:
            widest = math.hypot(self.blur_sigma_max, psf_sigma(self.lowres_voxel_max))
            if widest > MAX_BLUR_SIGMA:
                raise ValueError(
                    f"config.lowres_voxel_max ({self.lowres_voxel_max}) with blur_sigma_max "
                    f"({self.blur_sigma_max}) blurs with sigma {widest:.2f} voxels; at most "
                    f"{MAX_BLUR_SIGMA} is supported (the point-spread function of voxel size v "
                    "has FWHM v)")

    def check_axes(self, d: int) -> None:
        """Some acquisition axis of each enabled option exists in a d-dimensional image (axes
        beyond the image's are left out: the default (0, 1, 2) serves 2D too)."""
        for name, prob in (("thick_slice_axes", self.thick_slice_prob),
                           ("lowres_axes", self.lowres_prob)):
            if prob > 0 and not self.acquisition_axes(name, d):
                raise ValueError(f"config.{name} {getattr(self, name)} names no axis of a "
                                 f"{d}D image")

    def acquisition_axes(self, name: str, d: int) -> tuple[int, ...]:
        """thick_slice_axes or lowres_axes restricted to a d-dimensional image."""
        return tuple(a for a in getattr(self, name) if a < d)

    @property
    def acquisition_enabled(self) -> bool:
        """Whether any acquisition option draws (border is not drawn: it is not counted)."""
        return self.thick_slice_prob > 0 or self.lowres_prob > 0 or self.clear_background_prob > 0

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


# Clinical-looking MRI (docs/acquisition.md gives the reason for each range): half the volumes
# acquired in thick slices along one axis (2 to 6 voxels apart, as 2-6 mm slices of a 1 mm
# grid), half at a lower resolution (voxels of 1 to 3 along every axis, with their
# point-spread function), a third skull-stripped (background cleared).
CLINICAL = SynthesisConfig(thick_slice_prob=0.5, thick_slice_stride_min=2,
                           thick_slice_stride_max=6, thick_slice_axes=(0, 1, 2),
                           lowres_prob=0.5, lowres_voxel_min=1.0, lowres_voxel_max=3.0,
                           clear_background_prob=0.3)

# The published settings: 128^3 with 8 labels, 512^2 with 16 labels, and the clinical variant
# of the 3D one. Read-only: a preset is shared by every caller (configs are frozen; use
# config.replace for a variant).
PRESETS = MappingProxyType({
    "rasd3d": ((128, 128, 128), 8, SynthesisConfig()),
    "rasd2d": ((512, 512), 16, SynthesisConfig()),
    "rasd3d-clinical": ((128, 128, 128), 8, CLINICAL),
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
