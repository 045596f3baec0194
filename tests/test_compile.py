"""torch.compile(fullgraph=True) traces synthesize_into: ops are opaque custom ops with fakes."""

import torch

import rasd_kernels as rk

from conftest import KERNEL_BACKENDS

SMALL = rk.SynthesisConfig(field_nodes=(4, 3), warp_nodes=(5, 3), bias_fwhm_min=4.0,
                           bias_fwhm_max=8.0)


def test_fullgraph_compile_matches_eager():
    backend = "cpu" if "cpu" in KERNEL_BACKENDS else "reference"

    def step(image, label, start):
        rk.synthesize_into(image, label, num_labels=3, seed=1, start_index=start, config=SMALL,
                           backend=backend)
        return image.mean()

    compiled = torch.compile(step, fullgraph=True)
    image, label = torch.empty(2, 1, 12, 13), torch.empty(2, 12, 13, dtype=torch.uint8)
    compiled(image, label, torch.tensor(7))
    eager_image, eager_label = torch.empty_like(image), torch.empty_like(label)
    step(eager_image, eager_label, torch.tensor(7))
    assert torch.equal(image, eager_image) and torch.equal(label, eager_label)
    # A new start index is data, not a constant baked into the graph.
    compiled(image, label, torch.tensor(8))
    step(eager_image, eager_label, torch.tensor(8))
    assert torch.equal(label, eager_label)
