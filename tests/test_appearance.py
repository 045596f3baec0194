"""appearance: labels -> image, every backend against the float64 reference."""

import math

import pytest
import torch

from rasd_kernels.ops import appearance
from rasd_kernels.layout import scalar_count, scalar_slices, set_no_acquisition

from conftest import generator

# float32 against float64 through intensity, exp(bias), Box-Muller noise, blur, min-max and a
# gamma in [0.5, 1.5]: x ** 0.5 amplifies absolute errors near 0, hence the absolute bound.
IMAGE_ATOL = 2e-4
STATS_RTOL = 1e-5

CASES = [  # (shape, K, texture)
    ((7, 9, 11), 3, False),
    ((16, 13, 19), 8, True),
    ((33, 37), 16, False),
    ((40, 21), 4, True),
]


def random_inputs(shape, K, texture, seed, batch=2, apps=2):
    g = generator(seed)
    d = len(shape)
    labels = torch.randint(0, K, (batch, *shape), generator=g, dtype=torch.uint8)
    stats = torch.stack([torch.rand(batch, apps, K, generator=g),
                         0.2 * torch.rand(batch, apps, K, generator=g) * texture], -1)
    nodes = [int((n - 1) / 3) + 4 for n in shape]
    coef = 0.2 * torch.randn(batch, apps, *nodes, generator=g)
    s = torch.empty(batch, apps, scalar_count(d))
    sl = scalar_slices(d)
    s[..., sl["bias_spacing"]] = 3 + 6 * torch.rand(batch, apps, d, generator=g)
    s[..., sl["bias_offset"]] = torch.rand(batch, apps, d, generator=g)
    s[..., sl["noise_std"]] = 0.05 + 0.35 * torch.rand(batch, apps, 1, generator=g)
    s[..., sl["blur_sigma"]] = torch.rand(batch, apps, d, generator=g)
    s[..., sl["gamma"]] = 0.5 + torch.rand(batch, apps, 1, generator=g)
    set_no_acquisition(s, d)
    index = torch.randint(0, 1 << 40, (batch,), generator=g)
    return labels, stats, coef, s, index


def run(backend, device, labels, stats, coef, scalars, index, seed=7):
    batch, apps = stats.shape[:2]
    image = torch.full((batch, apps, *labels.shape[1:]), float("nan"), device=device)
    out_stats = torch.full((batch, apps, 4), float("nan"), device=device)
    appearance(image, labels.to(device), stats.to(device), coef.to(device), scalars.to(device),
               out_stats, index.to(device), seed, backend=backend)
    return image.cpu(), out_stats.cpu()


@pytest.mark.parametrize("case", range(len(CASES)))
def test_matches_reference(backend, device, case):
    shape, K, texture = CASES[case]
    inputs = random_inputs(shape, K, texture, case)
    image, stats = run(backend, device, *inputs)
    expected, expected_stats = run("reference", torch.device("cpu"), *inputs)
    torch.testing.assert_close(stats, expected_stats, rtol=STATS_RTOL, atol=1e-6)
    torch.testing.assert_close(image, expected, rtol=0, atol=IMAGE_ATOL)
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0


def _plain_scalars(d, blur=0.0, gamma=1.0):
    """Bias spacing 4 with zero coefficients (no bias), no noise, given blur and gamma."""
    s = torch.zeros(1, 1, scalar_count(d))
    set_no_acquisition(s, d)
    sl = scalar_slices(d)
    s[..., sl["bias_spacing"]] = 4.0
    s[..., sl["blur_sigma"]] = blur
    s[..., sl["gamma"]] = gamma
    return s


def test_single_label_without_noise_normalises_to_zero(backend_or_reference):
    backend, device = backend_or_reference
    labels = torch.zeros(1, 6, 7, 8, dtype=torch.uint8)
    stats = torch.tensor([0.7, 0.0]).reshape(1, 1, 1, 2)
    coef = torch.zeros(1, 1, 5, 5, 6)
    image, st = run(backend, device, labels, stats, coef, _plain_scalars(3), torch.tensor([0]))
    assert bool((image == 0).all())
    torch.testing.assert_close(st, torch.tensor([[[0.7, 0.7, 0.7, 0.0]]]))


def test_two_labels_edge_blur_and_gamma_by_hand(backend_or_reference):
    """Means 0.2 | 0.8 split along W, blur sigma 1 along W only, gamma 2: the voxel left of the
    edge gets (0.2 * sum of taps on the left + 0.8 * taps on the right), normalised, squared."""
    backend, device = backend_or_reference
    W = 12
    labels = (torch.arange(W) >= 6).to(torch.uint8).expand(1, 5, W).contiguous()
    stats = torch.tensor([[0.2, 0.0], [0.8, 0.0]]).reshape(1, 1, 2, 2)
    coef = torch.zeros(1, 1, 5, 6)
    scalars = _plain_scalars(2, gamma=2.0)
    scalars[..., scalar_slices(2)["blur_sigma"]] = torch.tensor([0.0, 1.0])
    image, _ = run(backend, device, labels, stats, coef, scalars, torch.tensor([3]))
    taps = [math.exp(-0.5 * i * i) for i in range(-3, 4)]
    right_share = sum(taps[4:]) / sum(taps)     # voxel 5: offsets +1..+3 fall on label 1
    x5 = 0.2 + 0.6 * right_share
    expected = ((x5 - 0.2) / (0.6 + 1e-6)) ** 2
    assert abs(float(image[0, 0, 2, 5]) - expected) < 1e-5
    assert float(image[0, 0, 2, 0]) == 0.0      # the far left keeps the minimum
    assert abs(float(image[0, 0, 2, W - 1]) - (0.6 / (0.6 + 1e-6)) ** 2) < 1e-5


def test_noise_streams_depend_on_appearance_and_sample(backend, device):
    labels, stats, coef, scalars, _ = random_inputs((33, 37), 4, False, 5, batch=2, apps=2)
    stats[1] = stats[0]
    coef[1] = coef[0]
    scalars[1] = scalars[0]
    labels[1] = labels[0]
    stats[:, 1], coef[:, 1], scalars[:, 1] = stats[:, 0], coef[:, 0], scalars[:, 0]
    image, _ = run(backend, device, labels, stats, coef, scalars, torch.tensor([4, 5]))
    assert not torch.equal(image[0, 0], image[1, 0])   # other sample index
    assert not torch.equal(image[0, 0], image[0, 1])   # other appearance
    same, _ = run(backend, device, labels, stats, coef, scalars, torch.tensor([5, 4]))
    assert torch.equal(same[1], image[0])              # the index alone decides


def test_opcheck(backend, device):
    labels, stats, coef, scalars, index = random_inputs((7, 9, 11), 3, True, 0)
    image = torch.empty(2, 2, 7, 9, 11, device=device)
    out_stats = torch.empty(2, 2, 4, device=device)
    torch.library.opcheck(torch.ops.rasd.appearance.default,
                          (image, labels.to(device), stats.to(device), coef.to(device),
                           scalars.to(device), out_stats, index.to(device), 3, backend))


@pytest.mark.parametrize("change,error,match", [
    (dict(labels=torch.zeros(2, 7, 9, 11, dtype=torch.int32)), TypeError, "labels must have dtype"),
    (dict(labels=torch.zeros(2, 7, 9, 10, dtype=torch.uint8)), ValueError, "labels must have shape"),
    (dict(label_stats=torch.zeros(2, 2, 3, 3)), ValueError, "label_stats must have shape"),
    (dict(scalars=torch.zeros(2, 2, 10)), ValueError, "scalars must have shape"),
    (dict(stats=torch.zeros(2, 2, 3)), ValueError, "stats must have shape"),
    (dict(seed=-5), ValueError, "seed must be in"),
])
def test_bad_arguments_are_named(change, error, match):
    labels, stats, coef, scalars, index = random_inputs((7, 9, 11), 3, True, 0)
    args = dict(image=torch.empty(2, 2, 7, 9, 11), labels=labels, label_stats=stats,
                bias_coef=coef, scalars=scalars, stats=torch.empty(2, 2, 4), sample_index=index,
                seed=3)
    args.update(change)
    with pytest.raises(error, match=match):
        appearance(**args, backend="reference")
