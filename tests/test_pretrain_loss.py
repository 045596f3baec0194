"""The RaSD loss against hand-computed values, absent-label masking, and float64 gradcheck."""

import math

import pytest
import torch

from rasd_pretrain.loss import consistency_loss, rasd_loss


def _tiny():
    """2 labels, 4 voxels (a 2x2 image), embedding dim 2.

    label 0: a = (1, 0), b = (0, 1);  label 1: c = (1, 1), d = (2, 0).
    """
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    return f.T.reshape(1, 2, 2, 2), y.reshape(1, 2, 2)


def _ce(logits, target):
    return -logits[target] + math.log(sum(math.exp(z) for z in logits))


def test_hand_computed_raw_inner_products():
    # P0 = (0.5, 0.5), P1 = (1.5, 0.5); tau = 0.5 so logits are 2 <P, f>.
    f, y = _tiny()
    seg = (_ce([1.0, 3.0], 0) + _ce([1.0, 1.0], 0) + _ce([2.0, 4.0], 1) + _ce([2.0, 6.0], 1)) / 4
    # P P^T / tau = [[1, 2], [2, 5]].
    dec = (_ce([1.0, 2.0], 0) + _ce([2.0, 5.0], 1)) / 2
    out = rasd_loss(f, y, 2, tau=0.5, eps=0.0, normalize=False)
    assert out.segmentation.item() == pytest.approx(seg, rel=1e-12)
    assert out.decoupling.item() == pytest.approx(dec, rel=1e-12)
    assert out.total.item() == pytest.approx(seg + dec, rel=1e-12)


def _unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _dot(u, v):
    return sum(a * b for a, b in zip(u, v))


def test_hand_computed_cosine_default_tau():
    # Normalised: voxels to unit length, prototypes = normalised means of those.
    f, y = _tiny()
    vox = [_unit(v) for v in ([1, 0], [0, 1], [1, 1], [2, 0])]
    p0 = _unit([(vox[0][i] + vox[1][i]) / 2 for i in range(2)])
    p1 = _unit([(vox[2][i] + vox[3][i]) / 2 for i in range(2)])
    tau = 0.07
    seg = sum(_ce([_dot(p0, v) / tau, _dot(p1, v) / tau], k)
              for v, k in zip(vox, [0, 0, 1, 1])) / 4
    dec = (_ce([_dot(p0, p0) / tau, _dot(p0, p1) / tau], 0)
           + _ce([_dot(p1, p0) / tau, _dot(p1, p1) / tau], 1)) / 2
    out = rasd_loss(f, y, 2)
    assert out.segmentation.item() == pytest.approx(seg, rel=1e-6)
    assert out.decoupling.item() == pytest.approx(dec, rel=1e-6)


def test_orthogonal_unit_embeddings_give_the_closed_form():
    # Perfectly separated unit prototypes: every CE is log(1 + exp(-1/tau)).
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    f = f.T.reshape(1, 2, 2, 2)
    y = torch.tensor([0, 0, 1, 1]).reshape(1, 2, 2)
    out = rasd_loss(f, y, 2)
    expected = math.log1p(math.exp(-1 / 0.07))
    assert out.segmentation.item() == pytest.approx(expected, rel=1e-9)
    assert out.decoupling.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("normalize", [True, False])
def test_absent_labels_are_neither_prototypes_nor_logits(normalize):
    # Labels {0, 2} present out of K = 4 must score exactly like K = 2 with labels {0, 1}.
    g = torch.Generator().manual_seed(0)
    f = torch.randn(1, 3, 5, 7, generator=g, dtype=torch.float64)
    y2 = torch.randint(0, 2, (1, 5, 7), generator=g)
    y4 = y2 * 2
    a = rasd_loss(f, y2, 2, normalize=normalize)
    b = rasd_loss(f, y4, 4, normalize=normalize)
    for x, z in zip(a, b):
        assert torch.allclose(x, z, rtol=1e-12, atol=0)


def test_batch_is_the_mean_of_samples_with_different_absent_labels():
    g = torch.Generator().manual_seed(1)
    f = torch.randn(2, 4, 6, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 6, 6), generator=g)
    y[1][y[1] == 1] = 0                       # sample 1 lacks label 1
    both = rasd_loss(f, y, 3)
    one = [rasd_loss(f[i:i + 1], y[i:i + 1], 3) for i in range(2)]
    for k in range(3):
        assert torch.allclose(both[k], (one[0][k] + one[1][k]) / 2, rtol=1e-12, atol=0)


def test_single_present_label_has_zero_decoupling_and_finite_gradient():
    f = torch.randn(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    y = torch.full((1, 4, 4), 2)
    out = rasd_loss(f, y, 5)
    assert out.decoupling.item() == 0.0
    out.total.backward()
    assert torch.isfinite(f.grad).all()


@pytest.mark.parametrize("normalize", [True, False])
def test_gradcheck_float64(normalize):
    g = torch.Generator().manual_seed(2)
    f = torch.randn(2, 3, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 3, (2, 3, 4), generator=g)
    y[0][y[0] == 2] = 1                       # an absent label on one sample
    tau = 0.07 if normalize else 1.0          # raw inner products at 0.07 saturate the softmax
    assert torch.autograd.gradcheck(
        lambda x: rasd_loss(x, y, 4, tau=tau, normalize=normalize).total, (f,))


@pytest.mark.parametrize("kind", ["cosine", "mse"])
def test_consistency(kind):
    g = torch.Generator().manual_seed(3)
    a = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    assert consistency_loss(a.detach(), 2 * a.detach() if kind == "cosine" else a.detach(),
                            kind).item() == pytest.approx(0.0, abs=1e-12)
    assert consistency_loss(a, b, kind).item() > 0
    assert torch.autograd.gradcheck(lambda x: consistency_loss(x, b, kind), (a,))


def test_low_precision_embeddings_are_scored_in_float32():
    f, y = _tiny()
    out = rasd_loss(f.to(torch.bfloat16), y, 2)
    assert out.total.dtype == torch.float32


def test_bad_inputs_name_the_problem():
    f, y = _tiny()
    with pytest.raises(ValueError, match="labels must have shape"):
        rasd_loss(f, y[:, :1], 2)
    with pytest.raises(TypeError, match="integer"):
        rasd_loss(f, y.float(), 2)
    with pytest.raises(ValueError, match="tau"):
        rasd_loss(f, y, 2, tau=0.0)
