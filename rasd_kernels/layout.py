"""Packed per-sample parameter layouts: the Python twin of csrc/common/layout.h.

rasd_kernels.params writes these tensors and every backend reads them by these names, never
by index arithmetic of its own; a test compares every entry with the compiled module's
layout.h, so the two cannot drift.

- Appearance scalars [B, A, scalar_count(d)] per (sample, appearance): the bias spline's
  control-point spacing and lattice offset come first, so that the bias_field and
  spline_maximum ops read the same rows.
- Blob parameters [B, K, blob_param_count(d)] per (sample, label): centre, the upper triangle
  of the precision matrix row by row, the log weight.
- Label statistics [B, A, K, LABEL_STATS]: mean intensity, texture standard deviation.
- Appearance statistics [B, A, STAT_COUNT], written by the appearance op: max|x| before the
  noise, min and max after the blur.
- Coarse grids: the scales of a field or warp packed one after another, n^d floats each.
"""

from __future__ import annotations


# ---- appearance scalars -----------------------------------------------------------------

def bias_spacing(d: int, axis: int = 0) -> int:
    """Voxels between bias control points along `axis`."""
    return axis


def bias_offset(d: int, axis: int = 0) -> int:
    """Phase of the bias lattice along `axis`, in node units."""
    return d + axis


def noise_std(d: int) -> int:
    """Standard deviation of the image noise, relative to max|x|."""
    return 2 * d


def blur_sigma(d: int, axis: int = 0) -> int:
    """Gaussian blur sigma along `axis`, in voxels."""
    return 2 * d + 1 + axis


def gamma(d: int) -> int:
    return 3 * d + 1


def resample_step(d: int, axis: int = 0) -> int:
    """Acquisition resampling along `axis`: samples every `step` voxels (1 with offset 0:
    not resampled)."""
    return 3 * d + 2 + axis


def resample_offset(d: int, axis: int = 0) -> int:
    """Phase of the acquisition samples along `axis`, in voxels."""
    return 4 * d + 2 + axis


def clear_background(d: int) -> int:
    """1 where label 0 becomes 0 in the final image, else 0."""
    return 5 * d + 2


def scalar_count(d: int) -> int:
    return 5 * d + 3


def scalar_slices(d: int) -> dict[str, slice]:
    """Each appearance scalar's columns by name."""
    return {
        "bias_spacing": slice(bias_spacing(d), bias_spacing(d) + d),
        "bias_offset": slice(bias_offset(d), bias_offset(d) + d),
        "noise_std": slice(noise_std(d), noise_std(d) + 1),
        "blur_sigma": slice(blur_sigma(d), blur_sigma(d) + d),
        "gamma": slice(gamma(d), gamma(d) + 1),
        "resample_step": slice(resample_step(d), resample_step(d) + d),
        "resample_offset": slice(resample_offset(d), resample_offset(d) + d),
        "clear_background": slice(clear_background(d), clear_background(d) + 1),
    }


def set_no_acquisition(scalars, d: int) -> None:
    """Acquisition columns of scalars [..., scalar_count(d)] that change nothing: no axis
    resampled, no background cleared."""
    columns = scalar_slices(d)
    scalars[..., columns["resample_step"]] = 1.0
    scalars[..., columns["resample_offset"]] = 0.0
    scalars[..., columns["clear_background"]] = 0.0


# ---- blob parameters -----------------------------------------------------------------------

def blob_precision(d: int) -> int:
    """First entry of the precision matrix's upper triangle."""
    return d


def blob_log_weight(d: int) -> int:
    return d + d * (d + 1) // 2


def blob_param_count(d: int) -> int:
    return blob_log_weight(d) + 1


# ---- label and appearance statistics -------------------------------------------------------

LABEL_MEAN, LABEL_STD, LABEL_STATS = 0, 1, 2
STAT_MAX_ABS, STAT_LO, STAT_HI, STAT_COUNT = 0, 1, 2, 4
NORMALISE_EPS = 1e-6


# ---- coarse grids ----------------------------------------------------------------------------

def grid_total(nodes, d: int) -> int:
    """Floats of one packed set of grids with `nodes` per axis at each scale."""
    return sum(n ** d for n in nodes)


def entries(d: int) -> dict[str, int]:
    """Every index and size above for one dimensionality (what the layout test compares)."""
    out = {"scalar_count": scalar_count(d), "noise_std": noise_std(d), "gamma": gamma(d),
           "blob_param_count": blob_param_count(d), "blob_precision": blob_precision(d),
           "blob_log_weight": blob_log_weight(d), "LABEL_MEAN": LABEL_MEAN,
           "LABEL_STD": LABEL_STD, "LABEL_STATS": LABEL_STATS, "STAT_MAX_ABS": STAT_MAX_ABS,
           "STAT_LO": STAT_LO, "STAT_HI": STAT_HI, "STAT_COUNT": STAT_COUNT,
           "clear_background": clear_background(d)}
    for axis in range(d):
        out[f"resample_step_{axis}"] = resample_step(d, axis)
        out[f"resample_offset_{axis}"] = resample_offset(d, axis)
        out[f"bias_spacing_{axis}"] = bias_spacing(d, axis)
        out[f"bias_offset_{axis}"] = bias_offset(d, axis)
        out[f"blur_sigma_{axis}"] = blur_sigma(d, axis)
    return out

