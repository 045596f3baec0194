"""philox_fill: the Philox4x32-10 stream, bit for bit across backends."""

import pytest
import torch

from rasd_kernels import streams
from rasd_kernels.ops import philox_fill
from rasd_kernels.reference import philox

from conftest import KNOWN_ANSWERS, generator


# float32 Box-Muller (log, sqrt, sin, cos) against float64 on identical uniforms.
NORMAL_ATOL = 1e-5
NORMAL_RTOL = 1e-5


@pytest.mark.parametrize("counter,key,expected", KNOWN_ANSWERS)
def test_reference_known_answers(counter, key, expected):
    assert tuple(int(w) for w in philox.philox4x32_10(counter, key)) == expected


def test_uniforms_are_exact_float32_odd_multiples_of_2_pow_minus_24():
    u = philox.fill((3, 1001), torch.tensor([0, 5, 1 << 40]), 11, 4, "uniform")
    scaled = u * 2.0 ** 24
    assert torch.equal(scaled, scaled.round())
    assert bool((scaled.long() % 2 == 1).all())
    assert torch.equal(u.float().double(), u)
    assert 0.0 < float(u.min()) and float(u.max()) < 1.0


def test_reference_normal_statistics():
    x = philox.fill((4, 50000), torch.arange(4), 123, streams.IMAGE_NOISE, "normal")
    assert abs(float(x.mean())) < 0.01
    assert abs(float(x.std()) - 1.0) < 0.01
    # Streams, samples and seeds are independent.
    y = philox.fill((4, 50000), torch.arange(4), 123, streams.TEXTURE_NOISE, "normal")
    z = philox.fill((4, 50000), torch.arange(4), 124, streams.IMAGE_NOISE, "normal")
    for other in (y, z):
        assert abs(float(torch.corrcoef(torch.stack([x.flatten(), other.flatten()]))[0, 1])) < 0.01


def _random_case(seed, device):
    g = generator(seed)
    shape = [(1, 7), (3, 5, 9), (2, 1027)][seed % 3]
    index = torch.randint(0, 1 << 62, (shape[0],), generator=g)
    rng_seed = int(torch.randint(0, 1 << 62, (1,), generator=g))
    stream = int(torch.randint(0, 1 << 31, (1,), generator=g))
    return shape, index.to(device), rng_seed, stream


@pytest.mark.parametrize("case", range(6))
def test_uniform_bit_identical_to_reference(backend, device, case):
    shape, index, seed, stream = _random_case(case, device)
    out = torch.full(shape, float("nan"), device=device)
    philox_fill(out, index, seed, stream, "uniform", backend=backend)
    assert torch.equal(out.cpu().double(), philox.fill(shape, index, seed, stream, "uniform"))


@pytest.mark.parametrize("case", range(6))
def test_normal_matches_reference(backend, device, case):
    shape, index, seed, stream = _random_case(case, device)
    out = torch.full(shape, float("nan"), device=device)
    philox_fill(out, index, seed, stream, "normal", backend=backend)
    torch.testing.assert_close(out.cpu().double(), philox.fill(shape, index, seed, stream, "normal"),
                               atol=NORMAL_ATOL, rtol=NORMAL_RTOL)


def test_permuting_sample_indices_permutes_rows(backend, device):
    index = torch.tensor([9, 1 << 33, 0, 77], device=device)
    perm = torch.tensor([2, 0, 3, 1], device=device)
    a = philox_fill(torch.empty(4, 513, device=device), index, 5, 3, "normal", backend=backend)
    b = philox_fill(torch.empty(4, 513, device=device), index[perm], 5, 3, "normal",
                    backend=backend)
    assert torch.equal(a[perm], b)


def test_opcheck(backend, device):
    out = torch.empty(2, 33, device=device)
    index = torch.tensor([3, 4], device=device)
    torch.library.opcheck(torch.ops.rasd.philox_fill.default,
                          (out, index, 17, 2, "normal", backend))


@pytest.mark.parametrize("bad,error,match", [
    (dict(out=torch.empty(2, 3, dtype=torch.float64)), TypeError, "out must have dtype"),
    (dict(out=torch.empty(3, 2).t()), ValueError, "out must be contiguous"),
    (dict(sample_index=torch.tensor([1, 2, 3])), ValueError, "sample_index must have shape"),
    (dict(sample_index=torch.tensor([1.0, 2.0])), TypeError, "sample_index must have dtype"),
    (dict(seed=-1), ValueError, "seed must be in"),
    (dict(seed=1.5), TypeError, "seed must be an int"),
    (dict(distribution="poisson"), ValueError, "distribution must be one of"),
])
def test_bad_arguments_are_named(bad, error, match):
    args = dict(out=torch.empty(2, 3), sample_index=torch.tensor([1, 2]), seed=1, stream=2,
                distribution="normal")
    args.update(bad)
    with pytest.raises(error, match=match):
        philox_fill(**args, backend="reference")
