"""Hypothesis over the config space: images finite and in [0, 1], labels < K, every backend."""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rasd_kernels as rk

from conftest import KERNEL_BACKENDS, device_for

BACKENDS = ["reference", *KERNEL_BACKENDS]


@st.composite
def ranges(draw, lo, hi):
    a = draw(st.floats(lo, hi))
    b = draw(st.floats(lo, hi))
    return min(a, b), max(a, b)


@st.composite
def configs(draw):
    def pair(name, lo, hi):
        a, b = draw(ranges(lo, hi))
        return {f"{name}_min": a, f"{name}_max": b}

    kwargs = dict(shapes=draw(st.sampled_from(["perlin", "blobs"])),
                  field_nodes=(draw(st.integers(2, 5)), 2), warp_nodes=(draw(st.integers(2, 6)),),
                  field_std_max=draw(st.floats(0.0, 3.0)),
                  warp_std_max=draw(st.floats(0.0, 6.0)),
                  channels=draw(st.integers(1, 2)))
    for name, lo, hi in [("mean", -2.0, 2.0), ("texture_std", 0.0, 0.5), ("bias_std", 0.0, 0.5),
                         ("bias_fwhm", 2.0, 40.0), ("noise_std", 0.0, 1.0),
                         ("blur_sigma", 0.0, 2.0), ("gamma", 0.2, 3.0)]:
        kwargs.update(pair(name, lo, hi))
    return rk.SynthesisConfig(**kwargs)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs(), backend=st.sampled_from(BACKENDS),
       shape=st.sampled_from([(6, 7, 8), (9, 13), (16, 6)]), K=st.integers(1, 12),
       seed=st.integers(0, (1 << 63) - 1), start=st.integers(0, 1 << 40))
def test_outputs_are_valid_for_any_config(config, backend, shape, K, seed, start):
    image, label = rk.synthesize(2, shape, K, seed=seed, start_index=start,
                                 device=device_for(backend), config=config, backend=backend)
    assert image.shape == (2, config.channels, *shape)
    assert bool(torch.isfinite(image).all())
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert int(label.max()) < K
