"""spline_maximum: the largest value of each bias spline over its evaluation lattice, every
backend against the float64 reference, and the reference against the spline evaluated point
by point."""

import pytest
import torch

from rasd_kernels.ops import spline_maximum
from rasd_kernels.reference import spline_maximum as ref
from rasd_kernels.reference.interp import bspline

from test_bias_field import random_inputs

# float32 contractions of 4 taps per axis of O(0.3) coefficients: ~1e-6 relative.
RTOL = 1e-5

SHAPES = [(20, 17, 23), (41, 30), (512, 37), (16, 16, 16)]


def inputs(shape, seed):
    _, coef, scalars = random_inputs(shape, seed)
    coef[1, 0] = -coef[1, 0].abs() - 0.01  # negative everywhere: a quarter of max |psi|
    return coef, scalars


@pytest.mark.parametrize("shape", [(20, 17, 23), (41, 30)])
def test_reference_is_the_maximum_over_its_evaluation_lattice(shape):
    """The reference (separable contraction) against the spline evaluated point by point on
    the same lattice, for positive and for all-negative fields."""
    d = len(shape)
    coef, scalars = inputs(shape, seed=3)
    lattice = [torch.linspace(0.0, n - 1.0, ref.POINTS_PER_SPACING * (m - 3) + 1,
                              dtype=torch.float64) for n, m in zip(shape, coef.shape[2:])]
    pos = torch.stack(torch.meshgrid(*lattice, indexing="ij"), -1)
    got = ref.spline_maximum(coef.double(), scalars.double(), shape)
    for b in range(coef.shape[0]):
        for a in range(coef.shape[1]):
            values = bspline(coef[b, a], pos, scalars[b, a, :d], scalars[b, a, d:])
            # The largest value, or a quarter of the largest magnitude if that is larger.
            expected = torch.maximum(values.max(), 0.25 * values.abs().max())
            torch.testing.assert_close(got[b, a], expected, rtol=1e-9, atol=0.0)
            if (b, a) == (1, 0):
                assert values.max() < 0 and got[b, a] > 0


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference(backend, device, shape, seed):
    coef, scalars = inputs(shape, seed)
    expected = ref.spline_maximum(coef, scalars, shape)
    got = spline_maximum(coef.to(device), scalars.to(device), shape, backend=backend)
    assert got.dtype == torch.float32 and got.shape == coef.shape[:2]
    torch.testing.assert_close(got.cpu(), expected, rtol=RTOL, atol=0.0)


def test_each_lattice_alone_gives_the_same_maximum(backend, device):
    """Per (sample, appearance): independent of the rest of the batch."""
    coef, scalars = inputs((41, 30), 2)
    coef, scalars = coef.to(device), scalars.to(device)
    whole = spline_maximum(coef, scalars, (41, 30), backend=backend)
    alone = spline_maximum(coef[1:, 1:].contiguous(), scalars[1:, 1:].contiguous(), (41, 30),
                           backend=backend)
    assert torch.equal(whole[1:, 1:], alone)


def test_opcheck(backend, device):
    coef, scalars = inputs((20, 17, 23), 0)
    torch.library.opcheck(torch.ops.rasd.spline_maximum.default,
                          (coef.to(device), scalars.to(device), [20, 17, 23], backend))


@pytest.mark.parametrize("change,error,match", [
    (dict(coef=torch.zeros(2, 2, 9, 8, dtype=torch.float64)), TypeError, "coef must have dtype"),
    (dict(coef=torch.zeros(2, 2, 9, 3)), ValueError, "coef must have at least 4 nodes"),
    (dict(coef=torch.zeros(2, 2, 9)), ValueError, "coef must have 4 dimensions"),
    (dict(scalars=torch.zeros(2, 2, 3)), ValueError, "scalars must have shape"),
    (dict(scalars=torch.zeros(2, 3, 4)), ValueError, "scalars must have shape"),
    (dict(size=(1, 30)), ValueError, "size"),
])
def test_bad_arguments_are_named(change, error, match):
    coef, scalars = inputs((41, 30), 0)
    args = dict(coef=coef, scalars=scalars, size=(41, 30))
    args.update(change)
    with pytest.raises(error, match=match):
        spline_maximum(**args, backend="reference")
