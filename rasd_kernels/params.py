"""Draw every per-sample parameter from Philox into a preallocated workspace.

This is the "draw the parameters" half of synthesis: small tensors (coarse grids and a few
scalars per sample) filled by the philox_fill op and shaped by in-place torch arithmetic on the
training device. The kernels then apply them deterministically, so any sample can be replayed
from (seed, global index).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import layout, streams
from .config import BIAS_SPACING_PER_FWHM, FWHM_PER_SIGMA, SynthesisConfig
from .ops.philox_fill import philox_fill
from .ops.spline_maximum import spline_maximum


def expected_max_of_normals(count: int) -> float:
    """E[max of `count` i.i.d. N(0, 1)] (Gumbel approximation, < 2 % off for count >= 1000)."""
    a = math.sqrt(2.0 * math.log(count))
    return a - (math.log(math.log(count)) + math.log(4.0 * math.pi)) / (2.0 * a) + 0.5772 / a


# ---- the workspace -----------------------------------------------------------------------

@dataclass
class Workspace:
    """Coarse buffers of one (batch, shape, labels, views, config, device): a few hundred KB
    per sample, reused by every call with the same key."""

    anatomy_u: torch.Tensor     # [B, n_anatomy] uniforms
    fields: torch.Tensor        # perlin [B, K, sum n^d]; blobs [B, K, blob_param_count]
    warps: torch.Tensor         # [B, K or 1, d, sum n^d]
    appearance_u: torch.Tensor  # [B, A, n_appearance] uniforms
    acquisition_u: torch.Tensor  # [B, A, n_acquisition] uniforms
    label_stats: torch.Tensor   # [B, A, K, 2] (mean, texture std)
    bias_coef: torch.Tensor     # [B, A, *bias nodes]
    scalars: torch.Tensor       # [B, A, layout.scalar_count(d)]
    stats: torch.Tensor         # [B, A, 4] written by the appearance op
    sample_index: torch.Tensor  # [B] int64 global sample indices of the batch rows


def anatomy_count(config: SynthesisConfig, num_labels: int, d: int) -> int:
    if config.shapes == "perlin":
        return len(config.field_nodes) + len(config.warp_nodes)
    rotation = 3 if d == 3 else 1
    return len(config.warp_nodes) + num_labels * (2 * d + 1 + rotation)


def acquisition_count(d: int) -> int:
    """Uniforms per appearance of the acquisition options (draw_acquisition)."""
    return 6 + 2 * d


def appearance_count(num_labels: int, d: int) -> int:
    """Uniforms per appearance: means, texture stds, bias std, FWHM, offset, noise, blur, gamma."""
    return 2 * num_labels + 1 + d + d + 1 + d + 1


def make_workspace(batch: int, shape, num_labels: int, apps: int, config: SynthesisConfig,
                   device) -> Workspace:
    d, K = len(shape), num_labels
    f32 = dict(dtype=torch.float32, device=device)
    if config.shapes == "perlin":
        fields = torch.empty(batch, K, layout.grid_total(config.field_nodes, d), **f32)
        warp_labels = K
    else:
        fields = torch.empty(batch, K, layout.blob_param_count(d), **f32)
        warp_labels = 1
    return Workspace(
        anatomy_u=torch.empty(batch, anatomy_count(config, K, d), **f32),
        fields=fields,
        warps=torch.empty(batch, warp_labels, d, layout.grid_total(config.warp_nodes, d), **f32),
        appearance_u=torch.empty(batch, apps, appearance_count(K, d), **f32),
        acquisition_u=torch.empty(batch, apps, acquisition_count(d), **f32),
        label_stats=torch.empty(batch, apps, K, layout.LABEL_STATS, **f32),
        bias_coef=torch.empty(batch, apps, *config.bias_nodes_for(tuple(shape)), **f32),
        scalars=torch.empty(batch, apps, layout.scalar_count(d), **f32),
        stats=torch.empty(batch, apps, layout.STAT_COUNT, **f32),
        sample_index=torch.empty(batch, dtype=torch.int64, device=device),
    )


# ---- drawing -----------------------------------------------------------------------------

def _scale_segments(grids: torch.Tensor, nodes, d: int, amplitude: torch.Tensor) -> None:
    """grids [B, ..., sum n^d] *= amplitude [B, S] segment by segment (scale s)."""
    start = 0
    lead = grids.dim() - 2
    for s, n in enumerate(nodes):
        size = n ** d
        grids[..., start:start + size].mul_(amplitude[:, s].reshape(-1, *([1] * (lead + 1))))
        start += size


def _lerp(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * u


def draw_anatomy(ws: Workspace, shape, config: SynthesisConfig, seed: int,
                 backend: str) -> None:
    """Fill ws.fields and ws.warps (amplitudes folded into the grids)."""
    d = len(shape)
    philox_fill(ws.anatomy_u, ws.sample_index, seed, streams.ANATOMY_PARAMS, "uniform", backend)
    philox_fill(ws.warps, ws.sample_index, seed, streams.WARP_GRIDS, "normal", backend)
    n_warp = len(config.warp_nodes)
    warp_std = config.warp_std_for(tuple(shape))
    if config.shapes == "perlin":
        n_field = len(config.field_nodes)
        philox_fill(ws.fields, ws.sample_index, seed, streams.FIELD_GRIDS, "normal", backend)
        _scale_segments(ws.fields, config.field_nodes, d,
                        config.field_std_max * ws.anatomy_u[:, :n_field])
        _scale_segments(ws.warps, config.warp_nodes, d,
                        warp_std * ws.anatomy_u[:, n_field:n_field + n_warp])
    else:
        _scale_segments(ws.warps, config.warp_nodes, d, warp_std * ws.anatomy_u[:, :n_warp])
        ws.fields.copy_(blob_parameters(ws.anatomy_u[:, n_warp:], shape, config))


def _rotation(u: torch.Tensor, d: int) -> torch.Tensor:
    """Uniform random rotations [..., d, d] from uniforms [..., 3] (3D) or [..., 1] (2D)."""
    if d == 2:
        theta = math.pi * u[..., 0]
        c, s = torch.cos(theta), torch.sin(theta)
        return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    # Shoemake's uniform unit quaternion.
    r1, r2 = torch.sqrt(1 - u[..., 0]), torch.sqrt(u[..., 0])
    t1, t2 = 2 * math.pi * u[..., 1], 2 * math.pi * u[..., 2]
    x, y, z, w = r1 * torch.sin(t1), r1 * torch.cos(t1), r2 * torch.sin(t2), r2 * torch.cos(t2)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def blob_parameters(u: torch.Tensor, shape, config: SynthesisConfig) -> torch.Tensor:
    """Packed blobs [B, K, layout.blob_param_count] from uniforms [B, K * (2d + 1 + R)]."""
    d = len(shape)
    batch = u.shape[0]
    u = u.reshape(batch, -1, 2 * d + 1 + (3 if d == 3 else 1))
    # Per-axis Python floats, not a tensor built from the host (that would sync a GPU).
    centre = torch.stack([(n - 1) * u[..., a] for a, n in enumerate(shape)], -1)
    scale = torch.stack([n * _lerp(u[..., d + a], config.blob_scale_min, config.blob_scale_max)
                         for a, n in enumerate(shape)], -1)
    log_weight = torch.log(_lerp(u[..., 2 * d], config.blob_weight_min, config.blob_weight_max))
    rot = _rotation(u[..., 2 * d + 1:], d)
    precision = rot @ torch.diag_embed(scale.pow(-2)) @ rot.transpose(-1, -2)
    rows, cols = torch.triu_indices(d, d, device=u.device)
    return torch.cat([centre, precision[..., rows, cols], log_weight.unsqueeze(-1)], dim=-1)


def draw_appearance(ws: Workspace, shape, config: SynthesisConfig, seed: int,
                    backend: str) -> None:
    """Fill ws.label_stats, ws.bias_coef and ws.scalars for every appearance."""
    d, K = len(shape), ws.label_stats.shape[2]
    u = ws.appearance_u
    philox_fill(u, ws.sample_index, seed, streams.APPEARANCE_PARAMS, "uniform", backend)
    ws.label_stats[..., layout.LABEL_MEAN].copy_(_lerp(u[..., :K], config.mean_min,
                                                       config.mean_max))
    ws.label_stats[..., layout.LABEL_STD].copy_(_lerp(u[..., K:2 * K], config.texture_std_min,
                                       config.texture_std_max))
    j = 2 * K
    bias_std = _lerp(u[..., j], config.bias_std_min, config.bias_std_max)
    fwhm = _lerp(u[..., j + 1:j + 1 + d], config.bias_fwhm_min, config.bias_fwhm_max)
    j += 1 + d
    sl = layout.scalar_slices(d)
    ws.scalars[..., sl["bias_spacing"]].copy_(BIAS_SPACING_PER_FWHM * fwhm)
    ws.scalars[..., sl["bias_offset"]].copy_(u[..., j:j + d])
    j += d
    ws.scalars[..., sl["noise_std"]].copy_(_lerp(u[..., j:j + 1], config.noise_std_min,
                                                 config.noise_std_max))
    j += 1
    ws.scalars[..., sl["blur_sigma"]].copy_(_lerp(u[..., j:j + d], config.blur_sigma_min,
                                                  config.blur_sigma_max))
    j += d
    ws.scalars[..., sl["gamma"]].copy_(_lerp(u[..., j:j + 1], config.gamma_min, config.gamma_max))
    philox_fill(ws.bias_coef, ws.sample_index, seed, streams.BIAS_GRIDS, "normal", backend)
    target = bias_std * expected_max_of_normals(math.prod(shape))
    largest = spline_maximum(ws.bias_coef, ws.scalars, shape, backend)
    ws.bias_coef.mul_((target / largest).reshape(*target.shape, *([1] * d)))
    draw_acquisition(ws, shape, config, seed, backend)


def _pick(u: torch.Tensor, count: int) -> torch.Tensor:
    """An integer in [0, count) from a uniform in (0, 1)."""
    return torch.clamp((u * count).floor(), max=count - 1)


def draw_acquisition(ws: Workspace, shape, config: SynthesisConfig, seed: int,
                     backend: str) -> None:
    """The acquisition columns of ws.scalars (thick slices, low resolution, background
    clearing; SynthesisConfig): from their own Philox stream, so turning an option on
    changes nothing else of a sample. With every option off nothing is drawn."""
    d = len(shape)
    sl = layout.scalar_slices(d)
    layout.set_no_acquisition(ws.scalars, d)
    if not config.acquisition_enabled:
        return
    config.check_axes(d)
    u = ws.acquisition_u
    philox_fill(u, ws.sample_index, seed, streams.ACQUISITION_PARAMS, "uniform", backend)
    step = ws.scalars[..., sl["resample_step"]]           # views into the scalars
    offset = ws.scalars[..., sl["resample_offset"]]
    blur = ws.scalars[..., sl["blur_sigma"]]
    # Low resolution: a voxel size v per axis; its point-spread function joins the blur.
    # (Python ints index and compare below: no host-to-device copy, so a CUDA graph captures
    # it.)
    lowres = (u[..., 4:5] < config.lowres_prob).float()               # [B, A, 1]
    on = torch.zeros_like(blur)                                        # [B, A, d]
    for a in config.acquisition_axes("lowres_axes", d):
        on[..., a] = lowres[..., 0]
    voxel = _lerp(u[..., 5:5 + d], config.lowres_voxel_min, config.lowres_voxel_max)
    psf = torch.sqrt(torch.clamp(voxel * voxel - 1.0, min=0.0)) / FWHM_PER_SIGMA
    blur.copy_(torch.where(on > 0, torch.sqrt(blur * blur + psf * psf), blur))
    step.copy_(torch.where(on > 0, voxel, step))
    offset.copy_(torch.where(on > 0, u[..., 5 + d:5 + 2 * d] * voxel, offset))
    # Thick slices: one axis keeps every s-th slice (an int), at an int phase in [0, s).
    axes = config.acquisition_axes("thick_slice_axes", d)
    pick = _pick(u[..., 1], len(axes))
    axis = torch.full_like(pick, -1.0)
    for k, a in enumerate(axes):
        axis = torch.where(pick == k, float(a), axis)
    axis = torch.where(u[..., 0] < config.thick_slice_prob, axis, -1.0)  # -1: no thick axis
    strides = config.thick_slice_stride_max - config.thick_slice_stride_min + 1
    stride = config.thick_slice_stride_min + _pick(u[..., 2], strides)
    phase = torch.minimum((u[..., 3] * stride).floor(), stride - 1)
    for a in range(d):
        chosen = axis == a
        step[..., a].copy_(torch.where(chosen, stride, step[..., a]))
        offset[..., a].copy_(torch.where(chosen, phase, offset[..., a]))
    clear = (u[..., 5 + 2 * d:6 + 2 * d] < config.clear_background_prob).float()
    ws.scalars[..., sl["clear_background"]].copy_(clear)
