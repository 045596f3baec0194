"""Acquisition options (SPEC 9): thick slices, low resolution, background clearing, and the
border of the warps. Off by default; each option on changes only what it is about; the
kernels follow the float64 reference (tests/test_synthesize.py and tests/test_properties.py
also run them over random configs on every backend)."""

import pytest
import torch

import rasd_kernels as rk
from rasd_kernels import layout, params
from rasd_kernels.reference.appearance import resample_axis

from conftest import KERNEL_BACKENDS, device_for

THICK = rk.SynthesisConfig(thick_slice_prob=1.0, thick_slice_stride_min=3,
                           thick_slice_stride_max=3, gamma_min=1.0, gamma_max=1.0,
                           field_nodes=(4, 3), warp_nodes=(5, 3))
LOWRES = rk.SynthesisConfig(lowres_prob=1.0, lowres_voxel_min=4.0, lowres_voxel_max=4.0)
CLEAR = rk.SynthesisConfig(clear_background_prob=1.0)


@pytest.mark.parametrize("step,offset,expected", [
    (3.0, 1.0, [1, 1, 2, 3, 4, 5, 6, 7, 7, 7]),        # samples at 1, 4, 7
    (2.5, 0.5, [0.5, 1, 2, 3, 4, 5, 6, 7, 8, 8]),      # samples at 0.5, 3, 5.5, 8
    (1.0, 0.0, list(range(10))),                        # not resampled
    (20.0, 3.0, [3] * 10),                              # one sample
])
def test_resampling_a_ramp_by_hand(step, offset, expected):
    """Linear interpolation of samples of a linear function is that function between the
    first and last sample, and the nearest sample's value outside."""
    x = torch.arange(10, dtype=torch.float64).reshape(1, 10).expand(3, 10)
    out = resample_axis(x, 1, step, offset)
    assert torch.allclose(out, torch.tensor(expected, dtype=torch.float64).expand(3, 10))


def _scalars(config, shape, K=5, batch=2, start=3, seed=9):
    ws = params.make_workspace(batch, shape, K, config.channels, config, "cpu")
    torch.arange(start, start + batch, out=ws.sample_index)
    params.draw_appearance(ws, shape, config, seed, "reference")
    return ws.scalars


def test_options_off_draw_nothing_and_change_nothing():
    shape = (30, 28)
    base = rk.synthesize(2, shape, 5, seed=9, start_index=3)
    tuned = rk.synthesize(2, shape, 5, seed=9, start_index=3, config=rk.SynthesisConfig(
        thick_slice_stride_max=9, lowres_voxel_max=8.0, lowres_axes=(1,)))
    assert torch.equal(base[0], tuned[0]) and torch.equal(base[1], tuned[1])
    s = _scalars(rk.SynthesisConfig(), shape)
    sl = layout.scalar_slices(2)
    assert bool((s[..., sl["resample_step"]] == 1).all())
    assert bool((s[..., sl["resample_offset"]] == 0).all())
    assert bool((s[..., sl["clear_background"]] == 0).all())


@pytest.mark.parametrize("config", [THICK, LOWRES, CLEAR])
def test_an_option_changes_the_image_but_not_the_anatomy(config):
    shape = (20, 22, 18)
    base = rk.synthesize(2, shape, 5, seed=9, start_index=3, config=config.replace(
        thick_slice_prob=0.0, lowres_prob=0.0, clear_background_prob=0.0))
    on = rk.synthesize(2, shape, 5, seed=9, start_index=3, config=config)
    assert torch.equal(base[1], on[1])
    assert not torch.equal(base[0], on[0])


def test_background_clearing_zeroes_label_0_and_keeps_the_rest():
    shape = (26, 24)
    base = rk.synthesize(3, shape, 4, seed=1, start_index=8)
    image, label = rk.synthesize(3, shape, 4, seed=1, start_index=8, config=CLEAR)
    background = (label == 0).unsqueeze(1)
    assert bool(background.any())
    assert bool((image[background] == 0).all())
    assert torch.equal(image[~background], base[0][~background])


@pytest.mark.parametrize("backend", ["reference", *KERNEL_BACKENDS])
def test_thick_slices_fill_linearly_between_kept_slices(backend):
    """Stride 3 along axis 0 and gamma 1 (normalisation is affine): every slice between two
    kept ones is their linear interpolation, the kept ones sit at the drawn phase."""
    shape = (19, 9, 8)
    image, _ = rk.synthesize(2, shape, 5, seed=4, start_index=0, config=THICK,
                             device=device_for(backend), backend=backend)
    s = _scalars(THICK, shape, batch=2, start=0, seed=4)
    for b in range(2):
        assert float(s[b, 0, layout.resample_step(3, 0)]) == 3.0
        phase = int(s[b, 0, layout.resample_offset(3, 0)])
        x = image[b, 0].cpu().double()
        kept = list(range(phase, shape[0], 3))
        for k0, k1 in zip(kept, kept[1:]):
            for i in range(k0 + 1, k1):
                f = (i - k0) / 3
                assert torch.allclose(x[i], (1 - f) * x[k0] + f * x[k1], atol=2e-6)
        for i in range(kept[-1], shape[0]):
            assert torch.allclose(x[i], x[kept[-1]], atol=2e-6)


def test_low_resolution_smooths_the_resampled_axis_only():
    shape = (24, 24, 24)
    config = LOWRES.replace(lowres_axes=(0,))
    base, _ = rk.synthesize(2, shape, 6, seed=2, start_index=5, config=config.replace(
        lowres_prob=0.0))
    low, _ = rk.synthesize(2, shape, 6, seed=2, start_index=5, config=config)

    def roughness(x, axis):
        return float(x.diff(dim=axis).pow(2).mean())

    assert roughness(low, 2) < 0.5 * roughness(base, 2)           # axis 0 of the volume
    assert roughness(low, 4) > 0.5 * roughness(base, 4)           # W is untouched


def test_low_resolution_adds_its_point_spread_function_to_the_blur():
    shape = (20, 20)
    config = LOWRES.replace(lowres_axes=(1,), blur_sigma_min=0.5, blur_sigma_max=0.5)
    s = _scalars(config, shape)
    blur = s[..., layout.blur_sigma(2, 1)]
    psf = rk.config.psf_sigma(4.0)
    assert torch.allclose(blur, torch.full_like(blur, (0.25 + psf * psf) ** 0.5))
    assert bool((s[..., layout.blur_sigma(2, 0)] == 0.5).all())
    assert bool((s[..., layout.resample_step(2, 1)] == 4.0).all())


@pytest.mark.parametrize("changes,match", [
    (dict(border="wrap"), "border must be one of"),
    (dict(border="zeros", shapes="blobs"), "applies to shapes='perlin'"),
    (dict(thick_slice_prob=1.5), r"thick_slice_prob must be in \[0, 1\]"),
    (dict(lowres_prob=-0.1), r"lowres_prob must be in \[0, 1\]"),
    (dict(clear_background_prob=float("nan")), "clear_background_prob must be a finite"),
    (dict(thick_slice_stride_min=0), r"thick_slice_stride_min must be an int in \[1, 64\]"),
    (dict(thick_slice_stride_min=5, thick_slice_stride_max=3), "must not exceed"),
    (dict(thick_slice_stride_max=2.5), "thick_slice_stride_max must be an int"),
    (dict(lowres_voxel_min=0.5), "lowres_voxel_min must be >= 1.0"),
    (dict(thick_slice_axes=(3,)), "thick_slice_axes must be a non-empty tuple"),
    (dict(lowres_axes=()), "lowres_axes must be a non-empty tuple"),
    (dict(lowres_prob=1.0, lowres_voxel_max=12.0), "lowres_voxel_max .* blurs with sigma"),
])
def test_bad_acquisition_values_name_the_field(changes, match):
    with pytest.raises(ValueError, match=match):
        rk.SynthesisConfig(**changes)


def test_axes_missing_from_the_image_are_named():
    config = rk.SynthesisConfig(thick_slice_prob=0.5, thick_slice_axes=(2,))
    with pytest.raises(ValueError, match=r"thick_slice_axes \(2,\) names no axis of a 2D"):
        rk.synthesize(1, (20, 20), 4, seed=0, config=config)
    rk.synthesize(1, (20, 20, 20), 4, seed=0, config=config)       # 3D has axis 2


def test_acquisition_samples_are_pure_functions_of_seed_and_index():
    config = rk.SynthesisConfig(thick_slice_prob=0.5, lowres_prob=0.5,
                                clear_background_prob=0.5, border="zeros")
    batch = rk.synthesize(6, (22, 20), 5, seed=3, start_index=40, config=config)
    for i in (0, 5):
        one = rk.synthesize(1, (22, 20), 5, seed=3, start_index=40 + i, config=config)
        assert torch.equal(batch[0][i], one[0][0]) and torch.equal(batch[1][i], one[1][0])
