"""gmm_shapes: coarse grids -> labels, every backend against the float64 reference."""

import pytest
import torch

from rasd_kernels.ops import gmm_shapes
from rasd_kernels.layout import blob_param_count, grid_total

from conftest import assert_labels_match, generator, random_blob_params

CASES = [  # (shape, K, field nodes, warp nodes, mode)
    ((7, 9, 11), 3, [4, 3], [5, 3], "perlin"),
    ((17, 19, 16), 8, [8, 4], [16, 8, 4], "perlin"),
    ((33, 37), 16, [8, 4], [16, 8, 4], "perlin"),
    ((10, 13), 2, [3], [4, 2], "perlin"),
    ((9, 140, 12), 4, [9, 5], [6, 3], "perlin"),      # field scales sharing nodes; H > 128
    ((70, 23), 5, [8, 4, 2], [16, 8, 4], "perlin"),  # three field scales
    ((11, 21, 13), 4, [8, 6], [5, 3], "perlin"),     # node lattice lcm(7, 5) too fine to merge
    ((9, 12, 10), 5, [], [5, 3], "blobs"),
    ((31, 26), 7, [], [16, 8, 4], "blobs"),
]


def random_inputs(shape, K, field_nodes, warp_nodes, mode, seed, batch=2):
    """Fields of O(1) and warps of a few voxels, as params.draw_anatomy makes them."""
    g = generator(seed)
    d = len(shape)
    warp_labels = K if mode == "perlin" else 1
    warps = torch.randn(batch, warp_labels, d, grid_total(warp_nodes, d), generator=g)
    warps *= max(shape) / 16 * torch.rand(batch, 1, 1, 1, generator=g)
    if mode == "perlin":
        fields = torch.randn(batch, K, grid_total(field_nodes, d), generator=g)
    else:
        fields = random_blob_params(shape, K, batch, g)
        assert fields.shape[-1] == blob_param_count(d)
    return fields, warps



@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference(backend, device, case, seed):
    shape, K, field_nodes, warp_nodes, mode = CASES[case]
    fields, warps = random_inputs(shape, K, field_nodes, warp_nodes, mode, seed)
    labels = torch.full((2, *shape), 255, dtype=torch.uint8, device=device)
    gmm_shapes(labels, fields.to(device), warps.to(device), field_nodes, warp_nodes, mode,
               backend=backend)
    assert int(labels.max()) < K
    assert_labels_match(labels, fields, warps, field_nodes, warp_nodes, mode)


def _ramp_case(shift: float):
    """2D, two labels: phi_0 rises from -1 to 1 along W, phi_1 = 0; warps shift every label
    by `shift` voxels along W."""
    H, W = 5, 9
    fields = torch.tensor([[-1.0, 1.0, -1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]).unsqueeze(0)
    warps = torch.zeros(1, 2, 2, 4)
    warps[:, :, 1] = shift
    return (H, W), fields, warps


@pytest.mark.parametrize("shift,first_zero", [(0.0, 4), (2.0, 2), (-3.5, 8)])
def test_hand_checked_ramp_with_shift_ties_and_clamping(backend_or_reference, shift, first_zero):
    """phi_0(q) = -1 + 2 q_w / 8 is >= 0 from q_w = 4 on (the tie at 4 goes to label 0, the
    lowest); with a shift s label 0 starts at w = 4 - s, and q_w clamps to 8 at the border."""
    backend, device = backend_or_reference
    (H, W), fields, warps = _ramp_case(shift)
    labels = torch.empty(1, H, W, dtype=torch.uint8, device=device)
    gmm_shapes(labels, fields.to(device), warps.to(device), [2], [2], "perlin", backend=backend)
    expected = (torch.arange(W) < first_zero).to(torch.uint8).expand(1, H, W)
    assert torch.equal(labels.cpu(), expected)


@pytest.mark.parametrize("case", [0, 1, 2, 4])
def test_border_zeros_matches_reference(backend, device, case):
    """Warps of up to a quarter of the size push many positions out of the volume."""
    shape, K, field_nodes, warp_nodes, mode = CASES[case]
    fields, warps = random_inputs(shape, K, field_nodes, warp_nodes, mode, 7)
    warps *= 4
    labels = torch.full((2, *shape), 255, dtype=torch.uint8, device=device)
    gmm_shapes(labels, fields.to(device), warps.to(device), field_nodes, warp_nodes, mode,
               backend=backend, border="zeros")
    assert_labels_match(labels, fields, warps, field_nodes, warp_nodes, mode, "zeros")
    edge = torch.empty_like(labels)
    gmm_shapes(edge, fields.to(device), warps.to(device), field_nodes, warp_nodes, mode,
               backend=backend)
    assert not torch.equal(edge, labels)        # the border mode changes the labels


@pytest.mark.parametrize("border,expected", [
    # edge: label 0's field reads its border value 0.5 > 0.2 wherever it lands
    ("edge", [0, 0, 0, 0, 0, 0, 0, 0, 0]),
    # zeros: shifted 7.5 voxels right, column w lands at q_w = w + 7.5, w - 0.5 voxels
    # outside from w = 1 on: factor 0.5 at w = 1 (0.25 still beats label 1's 0.2), 0 from
    # w = 2 on
    ("zeros", [0, 0, 1, 1, 1, 1, 1, 1, 1]),
])
def test_hand_checked_border(backend_or_reference, border, expected):
    backend, device = backend_or_reference
    H, W = 3, 9
    fields = torch.tensor([[0.5] * 4, [0.2] * 4]).unsqueeze(0)
    warps = torch.zeros(1, 2, 2, 4)
    warps[:, 0, 1] = 7.5                        # label 0 moves 7.5 voxels along W
    labels = torch.empty(1, H, W, dtype=torch.uint8, device=device)
    gmm_shapes(labels, fields.to(device), warps.to(device), [2], [2], "perlin", backend=backend,
               border=border)
    assert labels.cpu()[0].tolist() == [expected] * H


def test_constant_fields_pick_the_largest_whatever_the_warp(backend_or_reference):
    backend, device = backend_or_reference
    shape = (6, 7, 8)
    consts = torch.tensor([0.1, 0.5, 0.45, 0.3])
    fields = consts.reshape(1, 4, 1).expand(1, 4, grid_total([3], 3)).contiguous()
    warps = 3 * torch.randn(1, 4, 3, grid_total([4], 3), generator=generator(3))
    labels = torch.empty(1, *shape, dtype=torch.uint8, device=device)
    gmm_shapes(labels, fields.to(device), warps.to(device), [3], [4], "perlin", backend=backend)
    assert bool((labels == 1).all())


def test_blobs_nearest_centre(backend_or_reference):
    """Two isotropic blobs of equal weight and no warp: each voxel takes the nearer centre."""
    backend, device = backend_or_reference
    fields = torch.tensor([[[3.0, 3.0, 1.0, 0.0, 1.0, 0.0], [3.0, 12.0, 1.0, 0.0, 1.0, 0.0]]])
    warps = torch.zeros(1, 1, 2, grid_total([2], 2))
    labels = torch.empty(1, 6, 16, dtype=torch.uint8, device=device)
    gmm_shapes(labels, fields.to(device), warps.to(device), [], [2], "blobs", backend=backend)
    expected = (torch.arange(16) >= 8).to(torch.uint8).expand(1, 6, 16)
    assert torch.equal(labels.cpu(), expected)


@pytest.mark.parametrize("border", ["edge", "zeros"])
def test_opcheck(backend, device, border):
    fields, warps = random_inputs((7, 9, 11), 3, [4, 3], [5, 3], "perlin", 0)
    labels = torch.empty(2, 7, 9, 11, dtype=torch.uint8, device=device)
    torch.library.opcheck(torch.ops.rasd.gmm_shapes.default,
                          (labels, fields.to(device), warps.to(device), [4, 3], [5, 3],
                           "perlin", border, backend))


@pytest.mark.parametrize("change,error,match", [
    (dict(labels=torch.empty(2, 7, 9, 11, dtype=torch.int64)), TypeError, "labels must have dtype"),
    (dict(fields=torch.empty(2, 3, 5)), ValueError, "fields must have shape"),
    (dict(warps=torch.empty(2, 3, 2, 152)), ValueError, "warps must have shape"),
    (dict(mode="voronoi"), ValueError, "mode must be one of"),
    (dict(border="wrap"), ValueError, "border must be one of"),
    (dict(field_nodes=[1]), ValueError, "field_nodes must be"),
    (dict(labels=torch.empty(2, 3, 9, 11, dtype=torch.uint8)), ValueError, "too small"),
    (dict(fields=torch.empty(2, 256, 91)), ValueError, "number of labels"),
])
def test_bad_arguments_are_named(change, error, match):
    fields, warps = random_inputs((7, 9, 11), 3, [4, 3], [5, 3], "perlin", 0)
    args = dict(labels=torch.empty(2, 7, 9, 11, dtype=torch.uint8), fields=fields, warps=warps,
                field_nodes=[4, 3], warp_nodes=[5, 3], mode="perlin")
    args.update(change)
    with pytest.raises(error, match=match):
        gmm_shapes(**args, backend="reference")
