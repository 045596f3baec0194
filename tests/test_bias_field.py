"""bias_field: image *= exp(cubic B-spline), every backend against the float64 reference."""

import pytest
import torch

from rasd_kernels.ops import bias_field
from rasd_kernels.reference import bias_field as ref

from conftest import generator

# float32 spline evaluation (64 taps of O(0.3) coefficients) and exp: ~1e-6 relative.
RTOL = 1e-5
ATOL = 1e-6

SHAPES = [(7, 9, 11), (16, 13, 19), (33, 37), (64, 20)]


def random_inputs(shape, seed, batch=2, apps=2):
    g = generator(seed)
    d = len(shape)
    spacing = 3 + 6 * torch.rand(batch, apps, d, generator=g)
    offset = torch.rand(batch, apps, d, generator=g)
    nodes = [int((n - 1) / 3) + 4 for n in shape]
    coef = 0.3 * torch.randn(batch, apps, *nodes, generator=g)
    image = 0.1 + torch.rand(batch, apps, *shape, generator=g)
    return image, coef, torch.cat([spacing, offset], -1)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference(backend, device, shape, seed):
    image, coef, scalars = random_inputs(shape, seed)
    expected = image.clone()
    ref.bias_field(expected, coef, scalars)
    got = image.to(device)
    bias_field(got, coef.to(device), scalars.to(device), backend=backend)
    torch.testing.assert_close(got.cpu(), expected, rtol=RTOL, atol=ATOL)


def test_constant_coefficients_give_a_constant_gain(backend_or_reference):
    """Cubic B-spline weights sum to one: constant coefficients c give exp(c) everywhere."""
    backend, device = backend_or_reference
    image, coef, scalars = random_inputs((8, 9, 10), 4, batch=1, apps=1)
    coef = torch.full_like(coef, 0.25)
    got = image.clone().to(device)
    bias_field(got, coef.to(device), scalars.to(device), backend=backend)
    torch.testing.assert_close(got.cpu(), image * torch.exp(torch.tensor(0.25)), rtol=RTOL,
                               atol=ATOL)


def test_scalars_may_carry_the_whole_appearance_layout(backend, device):
    """Only the first 2d scalars are read (spacing, offset), so the appearance scalars work."""
    image, coef, scalars = random_inputs((33, 37), 2)
    longer = torch.cat([scalars, torch.rand(2, 2, 4, generator=generator(9))], -1)
    a, b = image.to(device), image.clone().to(device)
    bias_field(a, coef.to(device), scalars.to(device), backend=backend)
    bias_field(b, coef.to(device), longer.to(device), backend=backend)
    assert torch.equal(a, b)


def test_opcheck(backend, device):
    image, coef, scalars = random_inputs((7, 9, 11), 0)
    torch.library.opcheck(torch.ops.rasd.bias_field.default,
                          (image.to(device), coef.to(device), scalars.to(device), backend))


@pytest.mark.parametrize("change,error,match", [
    (dict(image=torch.ones(2, 2, 7, 9, 11, dtype=torch.float16)), TypeError, "image must have dtype"),
    (dict(coef=torch.zeros(2, 2, 3, 3, 3)), ValueError, "coef must have shape"),
    (dict(scalars=torch.zeros(2, 2, 5)), ValueError, "scalars must have shape"),
    (dict(image=torch.ones(2, 2, 7)), ValueError, "image must have 4 or 5 dimensions"),
])
def test_bad_arguments_are_named(change, error, match):
    image, coef, scalars = random_inputs((7, 9, 11), 0)
    args = dict(image=image, coef=coef, scalars=scalars)
    args.update(change)
    with pytest.raises(error, match=match):
        bias_field(**args, backend="reference")
