"""Fidelity to the published method: our synthesis and the literal published generator
(python/rasd_bench/literal.py) agree in distribution, at 64^3 with K = 8 and 128^2 with K = 16.

Tolerances follow from what is being claimed. Two implementations of one random process agree
in distribution, so every statistic has the same expectation under both; over n independent
samples each, the difference of the two sample means has standard error
se = sqrt(var_ours / n + var_literal / n). Unpaired comparisons allow Z = 4 se: a false alarm
probability of 6e-5 per statistic when the processes agree, and a shift larger than 4 se
fails. Samples are the sample indices 0 .. n - 1 of one seed; each index is an independent
stream in both generators, so they are n independent draws.

The bias field is also compared paired: both constructions evaluated at the same drawn std and
FWHM, which removes the spread of the U(0.01, 0.1) and U(16, 32) draws. SPEC 3 asks for the
same log-bias amplitude and correlation length within 20 %; the paired means have standard
errors of 1 to 4 %, so that bound is tested at full strength.

Border of the warps (SPEC 2 and 9): the published code resamples each field with zero
padding, so a label whose displaced position leaves the volume scores 0 there, which breaks
labels into extra fragments along the border; our default (border "edge") reads the border
value. Fractions of volume are unaffected; component counts are compared with the literal
generator evaluated with border padding on the same draws, and the zero-padding excess is
asserted where it belongs. With border "zeros" ours is the published construction: its
whole-volume component counts match the literal (zero-padded) generator's.
"""

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import ndimage

import rasd_kernels as rk
from rasd_kernels import backends, params
from rasd_kernels.config import BIAS_SPACING_PER_FWHM
from rasd_kernels.ops import bias_field

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from rasd_bench import literal  # noqa: E402

OURS = "cpu" if backends.unavailable_reason("cpu") is None else "reference"
SEED = 2026
SAMPLES = 20
Z = 4.0                # standard errors allowed between unpaired means
SPEC_BIAS_TOL = 0.20   # SPEC 3: same bias amplitude and correlation length within 20 %
CASES = {"3d": ((64, 64, 64), 8), "2d": ((128, 128), 16)}
CONFIG = rk.SynthesisConfig()


# ---- statistics, one value per sample ----------------------------------------------------

def sorted_fractions(label: torch.Tensor, K: int) -> np.ndarray:
    """[B, K] fraction of the volume of each label, largest first."""
    counts = [torch.bincount(x.flatten().long(), minlength=K).double() / x.numel() for x in label]
    return torch.stack(counts).sort(1, descending=True).values.numpy()


def components(label: torch.Tensor, K: int) -> np.ndarray:
    """[B] connected components per present label (face connectivity), averaged over labels."""
    out = []
    for x in label.numpy():
        counts = [ndimage.label(x == k)[1] for k in range(K) if (x == k).any()]
        out.append(np.mean(counts))
    return np.array(out)


def moments(image: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-image mean, standard deviation and skewness over the volume."""
    x = image.flatten(1).double()
    mean, std = x.mean(1), x.std(1)
    skew = ((x - mean[:, None]) ** 3).mean(1) / std ** 3
    return {"mean": mean.numpy(), "std": std.numpy(), "skewness": skew.numpy()}


def half_correlation_lag(psi: torch.Tensor) -> np.ndarray:
    """[B] lag in voxels where the spatial autocorrelation of psi [B, *S] (mean removed over
    the volume) first falls to 1/2, linearly interpolated, averaged over the axes."""
    d = psi.dim() - 1
    dims = tuple(range(1, d + 1))
    x = psi.double() - psi.double().mean(dims, keepdim=True)
    var = (x * x).mean(dims)
    total = torch.zeros_like(var)
    for axis in dims:
        n = x.shape[axis]
        lag_at_half = torch.full_like(var, float(n - 1))
        previous, done = torch.ones_like(var), torch.zeros_like(var, dtype=torch.bool)
        for lag in range(1, n):
            corr = (x.narrow(axis, 0, n - lag) * x.narrow(axis, lag, n - lag)).mean(dims) / var
            crossing = ~done & (corr < 0.5)
            lag_at_half = torch.where(crossing, lag - 1 + (previous - 0.5) / (previous - corr),
                                      lag_at_half)
            done |= crossing
            previous = corr
            if bool(done.all()):
                break
        total += lag_at_half
    return (total / d).numpy()


def our_log_bias(shape, K: int):
    """Our log-bias fields [B, *S] (bias_field applied to ones, as synthesize draws its
    parameters) with the drawn std [B] and FWHM [B, d]."""
    d = len(shape)
    ws = params.make_workspace(SAMPLES, shape, K, 1, CONFIG, "cpu")
    torch.arange(SAMPLES, out=ws.sample_index)
    params.draw_appearance(ws, shape, CONFIG, SEED, OURS)
    ones = torch.ones(SAMPLES, 1, *shape)
    bias_field(ones, ws.bias_coef, ws.scalars, OURS)
    u_std = ws.appearance_u[:, 0, 2 * K]     # appearance uniforms: K means, K stds, bias std
    std = CONFIG.bias_std_min + (CONFIG.bias_std_max - CONFIG.bias_std_min) * u_std
    fwhm = ws.scalars[:, 0, :d] / BIAS_SPACING_PER_FWHM
    return ones[:, 0].log(), std, fwhm


def bias_stats(psi: torch.Tensor) -> dict[str, np.ndarray]:
    return {"amplitude": psi.flatten(1).amax(1).double().numpy(),
            "lag": half_correlation_lag(psi)}


# ---- the samples, made once per case -----------------------------------------------------

def make_case(name: str) -> SimpleNamespace:
    """Per-sample statistics of both generators for one case of CASES."""
    shape, K = CASES[name]
    image, label = rk.synthesize(SAMPLES, shape, K, seed=SEED, config=CONFIG, backend=OURS)
    _, zeros_label = rk.synthesize(SAMPLES, shape, K, seed=SEED,
                                   config=CONFIG.replace(border="zeros"), backend=OURS)
    lit_image, lit_label = literal.generate(SAMPLES, shape, K, seed=SEED, config=CONFIG)
    lit_border = literal.labels(SAMPLES, shape, K, seed=SEED, config=CONFIG,
                                padding_mode="border")
    psi, std, fwhm = our_log_bias(shape, K)
    lit_psi_paired = literal.log_bias(SAMPLES, shape, seed=SEED, config=CONFIG, std=std,
                                      fwhm=fwhm)[0]
    lit_psi = literal.log_bias(SAMPLES, shape, seed=SEED, config=CONFIG)[0]   # generate's
    return SimpleNamespace(
        name=name, K=K,
        fractions=(sorted_fractions(label, K), sorted_fractions(lit_label, K)),
        components=(components(label, K), components(lit_label, K)),
        border_components=components(lit_border, K),
        zeros_components=components(zeros_label, K),
        zeros_fractions=sorted_fractions(zeros_label, K),
        moments=(moments(image), moments(lit_image)),
        bias=(bias_stats(psi), bias_stats(lit_psi)),
        bias_paired=(bias_stats(psi), bias_stats(lit_psi_paired)),
    )


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request) -> SimpleNamespace:
    return make_case(request.param)


def assert_same_mean(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    """|mean difference| <= Z standard errors of the difference (unpaired samples)."""
    se = math.sqrt(ours.var(ddof=1) / len(ours) + theirs.var(ddof=1) / len(theirs))
    diff = ours.mean() - theirs.mean()
    assert abs(diff) <= Z * se, (f"{what}: ours {ours.mean():.4g}, literal {theirs.mean():.4g},"
                                 f" difference {diff:.3g} > {Z} x se {se:.3g}")


def assert_ratio_within_spec(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    """Mean paired ratio ours / literal within SPEC_BIAS_TOL of 1."""
    ratio = ours / theirs
    se = ratio.std(ddof=1) / math.sqrt(len(ratio))
    assert abs(ratio.mean() - 1.0) <= SPEC_BIAS_TOL, (
        f"{what}: paired ratio ours / literal {ratio.mean():.3f} +- {se:.3f} (se), SPEC asks "
        f"for 1 +- {SPEC_BIAS_TOL}")


# ---- label maps ---------------------------------------------------------------------------

def test_sorted_label_fractions_match(case):
    ours, theirs = case.fractions
    for rank in range(case.K):
        assert_same_mean(ours[:, rank], theirs[:, rank], f"{case.name} fraction of rank {rank}")


def test_components_per_label_match_the_intended_function(case):
    ours, _ = case.components
    assert_same_mean(ours, case.border_components, f"{case.name} components per label")


def test_published_zero_padding_adds_border_fragments(case):
    # Same draws, zero versus border padding: only voxels whose displaced position leaves the
    # volume for some label can differ. Paired, the excess is many standard errors wide at 20
    # samples (about +90 components per label at 64^3, where ours has about 100, and +4 of 9
    # at 128^2); the fractions of volume, compared with the zero-padded maps, are unaffected.
    _, zeros = case.components
    excess = zeros - case.border_components
    se = excess.std(ddof=1) / math.sqrt(len(excess))
    assert excess.mean() > Z * se, (f"{case.name}: zero padding adds {excess.mean():.3g} "
                                    f"+- {se:.3g} components per label")


def test_border_zeros_matches_the_published_components(case):
    """Ours with border "zeros" against the literal generator's zero padding, unpaired: the
    whole-volume component counts (border fragments included) and the label fractions."""
    _, literal_components = case.components
    assert_same_mean(case.zeros_components, literal_components,
                     f"{case.name} components per label, border zeros")
    _, literal_fractions = case.fractions
    for rank in range(case.K):
        assert_same_mean(case.zeros_fractions[:, rank], literal_fractions[:, rank],
                         f"{case.name} fraction of rank {rank}, border zeros")


def test_border_zeros_adds_the_fragments_that_edge_leaves_out(case):
    ours, _ = case.components
    excess = case.zeros_components - ours
    se = excess.std(ddof=1) / math.sqrt(len(excess))
    assert excess.mean() > Z * se, (f"{case.name}: border zeros adds {excess.mean():.3g} "
                                    f"+- {se:.3g} components per label")


# ---- bias field ---------------------------------------------------------------------------

def test_bias_amplitude_matches_at_equal_parameters(case):
    ours, theirs = case.bias_paired
    assert_ratio_within_spec(ours["amplitude"], theirs["amplitude"],
                             f"{case.name} log-bias amplitude")


def test_bias_correlation_length_matches_at_equal_parameters(case):
    ours, theirs = case.bias_paired
    assert_ratio_within_spec(ours["lag"], theirs["lag"], f"{case.name} bias correlation length")


@pytest.mark.parametrize("statistic", ["amplitude", "lag"])
def test_bias_statistics_match_in_distribution(case, statistic):
    ours, theirs = case.bias
    # Each generator draws its own std and FWHM: the parameter ranges are checked too.
    assert_same_mean(ours[statistic], theirs[statistic], f"{case.name} bias {statistic}")


# ---- images -------------------------------------------------------------------------------

@pytest.mark.parametrize("statistic", ["mean", "std", "skewness"])
def test_image_moments_match(case, statistic):
    ours, theirs = case.moments
    assert_same_mean(ours[statistic], theirs[statistic], f"{case.name} image {statistic}")
