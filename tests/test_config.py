"""SynthesisConfig: presets, derived values and validation."""

import math

import pytest

import rasd_kernels as rk
from rasd_kernels.config import BIAS_SPACING_PER_FWHM


def test_presets_match_the_published_setup():
    shape, K, config = rk.preset("rasd3d")
    assert shape == (128, 128, 128) and K == 8
    assert config.field_nodes == (8, 4) and config.warp_nodes == (16, 8, 4)
    assert config.warp_std_for(shape) == 8.0
    shape, K, config = rk.preset("rasd2d")
    assert shape == (512, 512) and K == 16 and config.warp_std_for(shape) == 32.0
    with pytest.raises(ValueError, match="unknown preset"):
        rk.preset("rasd4d")


def test_bias_lattice_covers_the_volume_at_the_finest_spacing():
    config = rk.SynthesisConfig()
    nodes = config.bias_nodes_for((128, 96, 64))
    h = BIAS_SPACING_PER_FWHM * config.bias_fwhm_min
    for n, size in zip(nodes, (128, 96, 64)):
        # the last voxel, with an offset just below 1, needs node floor((size - 1) / h + 2) + 2
        assert math.floor((size - 1) / h + 1.999999) + 2 <= n - 1


@pytest.mark.parametrize("change,match", [
    (dict(shapes="cubes"), "config.shapes"),
    (dict(field_nodes=(8, 1)), "config.field_nodes"),
    (dict(warp_nodes=()), "config.warp_nodes"),
    (dict(mean_min=0.8, mean_max=0.2), "config.mean_min .* must not exceed"),
    (dict(noise_std_max=float("nan")), "config.noise_std_max must be a finite number"),
    (dict(noise_std_min=-0.1), "config.noise_std_min must be >= 0"),
    (dict(gamma_min=0.0), "config.gamma_min must be >= "),
    (dict(blur_sigma_max=10.0), "config.blur_sigma_max must be <= "),
    (dict(channels=0), "config.channels"),
    (dict(warp_std_max=-1.0), "config.warp_std_max"),
    (dict(bias_fwhm_min=0.5), "config.bias_fwhm_min"),
])
def test_bad_values_are_refused_by_name(change, match):
    with pytest.raises(ValueError, match=match):
        rk.SynthesisConfig(**change)


def test_replace_validates_again():
    with pytest.raises(ValueError, match="config.gamma_min"):
        rk.SynthesisConfig().replace(gamma_min=-1.0)
