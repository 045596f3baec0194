"""synthesize / synthesize_into: determinism, batch composition, views, backends agree."""

import pytest
import torch

import rasd_kernels as rk

from conftest import device_for

SMALL = rk.SynthesisConfig(field_nodes=(4, 3), warp_nodes=(5, 3), bias_fwhm_min=4.0,
                           bias_fwhm_max=8.0)
CASES = [((9, 10, 11), 4, SMALL), ((24, 20), 6, SMALL),
         ((17, 16, 18), 8, rk.SynthesisConfig()), ((20, 22), 5, SMALL.replace(shapes="blobs")),
         ((12, 11, 13), 5, SMALL.replace(thick_slice_prob=0.5, lowres_prob=0.5, border="zeros",
                                         clear_background_prob=0.5, thick_slice_axes=(0, 2))),
         ((30, 26), 6, SMALL.replace(thick_slice_prob=1.0, lowres_prob=1.0,
                                     lowres_voxel_max=6.0, border="zeros"))]

# Whole pipelines: a label tie flips intensities within the blur radius, so images are compared
# where both labels agree in a neighbourhood, and ties must stay rare.
MAX_LABEL_MISMATCH = 1e-3
IMAGE_ATOL = 5e-4


def synth(backend, batch, shape, K, config, start_index=0, views=1, seed=11):
    return rk.synthesize(batch, shape, K, seed=seed, start_index=start_index,
                         device=device_for(backend), config=config, views=views, backend=backend)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_matches_reference(backend, case):
    shape, K, config = CASES[case]
    image, label = synth(backend, 2, shape, K, config)
    ref_image, ref_label = synth("reference", 2, shape, K, config)
    differ = label.cpu() != ref_label
    assert differ.float().mean() <= MAX_LABEL_MISMATCH
    near_tie = _dilate(differ, radius=3)             # the blur radius
    keep = ~near_tie.unsqueeze(1).expand_as(image)
    if differ.any():   # a flipped voxel may move the min or max: normalisation shifts slightly
        atol = 20 * IMAGE_ATOL
    else:
        atol = IMAGE_ATOL
    torch.testing.assert_close(image.cpu()[keep], ref_image[keep], rtol=0, atol=atol)


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    pool = torch.nn.functional.max_pool3d if mask.dim() == 4 else torch.nn.functional.max_pool2d
    return pool(mask.float().unsqueeze(1), 2 * radius + 1, 1, radius).squeeze(1) > 0


@pytest.mark.parametrize("backend_name", ["reference", "kernel"])
def test_same_seed_and_index_same_sample(backend, backend_name):
    name = "reference" if backend_name == "reference" else backend
    a = synth(name, 2, (9, 10, 11), 4, SMALL, start_index=5)
    b = synth(name, 2, (9, 10, 11), 4, SMALL, start_index=5)
    c = synth(name, 2, (9, 10, 11), 4, SMALL, start_index=5, seed=12)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_sample_is_independent_of_batch_composition(backend):
    """Row i of a batch of 8 from start 100 equals the sample drawn alone at index 100 + i."""
    image, label = synth(backend, 8, (20, 22), 5, SMALL, start_index=100)
    for i in (0, 3, 7):
        one_image, one_label = synth(backend, 1, (20, 22), 5, SMALL, start_index=100 + i)
        assert torch.equal(label[i], one_label[0])
        assert torch.equal(image[i], one_image[0])


def test_views_share_the_anatomy_and_extend_the_first_view(backend):
    config = SMALL.replace(channels=2)
    one_image, one_label = synth(backend, 2, (24, 20), 6, config, views=1)
    image, label = synth(backend, 2, (24, 20), 6, config, views=2)
    assert image.shape == (2, 4, 24, 20)
    assert torch.equal(label, one_label)
    assert torch.equal(image[:, :2], one_image)
    assert not torch.equal(image[:, 0], image[:, 1])      # channels differ
    assert not torch.equal(image[:, 0], image[:, 2])      # views differ


def test_start_index_tensor_equals_int(backend):
    device = device_for(backend)
    image = torch.empty(2, 1, 24, 20, device=device)
    label = torch.empty(2, 24, 20, dtype=torch.uint8, device=device)
    rk.synthesize_into(image, label, num_labels=6, seed=11,
                       start_index=torch.tensor(42, device=device), config=SMALL, backend=backend)
    ref_image, ref_label = synth(backend, 2, (24, 20), 6, SMALL, start_index=42)
    assert torch.equal(label, ref_label) and torch.equal(image, ref_image)


def test_the_rasd2d_preset_matches_the_reference_at_its_size():
    """The published 2D setting as it is used (512^2, K = 16, default ranges): every label
    appears, and labels and image follow the float64 reference (same tolerances as above)."""
    shape, K, config = rk.preset("rasd2d")
    image, label = rk.synthesize(1, shape, K, seed=4, start_index=77, config=config,
                                 backend="cpu")
    ref_image, ref_label = rk.synthesize(1, shape, K, seed=4, start_index=77, config=config,
                                         backend="reference")
    assert image.dtype == torch.float32 and label.dtype == torch.uint8
    assert float(image.min()) == 0.0 and float(image.max()) <= 1.0
    assert len(label.unique()) >= K - 2
    differ = label != ref_label
    assert differ.float().mean() <= MAX_LABEL_MISMATCH
    keep = ~_dilate(differ, radius=3).unsqueeze(1).expand_as(image)
    atol = 20 * IMAGE_ATOL if differ.any() else IMAGE_ATOL
    torch.testing.assert_close(image[keep], ref_image[keep], rtol=0, atol=atol)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(batch=0), ValueError, "batch must be in"),
    (dict(shape=(4, 40, 40)), ValueError, "too small"),
    (dict(shape=(40,)), ValueError, "2D or 3D"),
    (dict(shape=(40.0, 40)), TypeError, "shape must be a tuple of 2 or 3 ints"),
    (dict(shape=64), TypeError, "shape must be a tuple of 2 or 3 ints, got int 64"),
    (dict(num_labels=0), ValueError, "num_labels must be in"),
    (dict(num_labels=256), ValueError, "num_labels must be in"),
    (dict(seed=-1), ValueError, "seed must be in"),
    (dict(views=0), ValueError, "views must be in"),
    (dict(config="rasd3d"), TypeError, "config must be a SynthesisConfig"),
    (dict(batch=1 << 20, shape=(4096, 4096, 4096)), MemoryError, "GiB"),
])
def test_bad_requests_are_refused_with_a_named_reason(kwargs, error, match):
    args = dict(batch=1, shape=(40, 40), num_labels=4, seed=0, backend="reference")
    args.update(kwargs)
    with pytest.raises(error, match=match):
        rk.synthesize(args.pop("batch"), args.pop("shape"), args.pop("num_labels"), **args)


def test_synthesize_into_checks_its_outputs():
    with pytest.raises(TypeError, match="image must have dtype"):
        rk.synthesize_into(torch.empty(1, 1, 20, 20, dtype=torch.float64),
                           torch.empty(1, 20, 20, dtype=torch.uint8), num_labels=3, seed=0)
    with pytest.raises(ValueError, match="label must have shape"):
        rk.synthesize_into(torch.empty(1, 1, 20, 20), torch.empty(1, 20, 21, dtype=torch.uint8),
                           num_labels=3, seed=0)
    with pytest.raises(ValueError, match="views \\* config.channels"):
        rk.synthesize_into(torch.empty(1, 3, 20, 20), torch.empty(1, 20, 20, dtype=torch.uint8),
                           num_labels=3, seed=0, config=SMALL.replace(channels=2))
