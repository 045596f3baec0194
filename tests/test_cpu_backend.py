"""CPU backend specifics: the C++ Philox, the stream ids, threading, determinism across thread
counts, the AVX-512 and portable label kernels, and the memory bound of gmm_shapes."""

import gc

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rasd_kernels
from rasd_kernels import backends, streams
from rasd_kernels.ops import appearance, bias_field, gmm_shapes, philox_fill
from rasd_kernels.layout import grid_total

from conftest import KNOWN_ANSWERS, generator

if backends.unavailable_reason("cpu") is not None:  # the build is part of the product
    raise RuntimeError(backends.unavailable_reason("cpu"))

from rasd_kernels import _C  # noqa: E402
from rasd_kernels.backends import cpu  # noqa: E402



@pytest.fixture
def threads():
    """Set the kernel thread count inside a test; restored afterwards."""
    before = cpu.get_num_threads()
    yield cpu.set_num_threads
    cpu.set_num_threads(before)


@pytest.mark.parametrize("counter,key,expected", KNOWN_ANSWERS)
def test_cpp_philox_known_answers(counter, key, expected):
    assert tuple(_C.philox4x32_10(list(counter), list(key))) == expected


def test_stream_ids_match_python():
    ids = _C.stream_ids()
    assert ids.pop("MAX_ELEMENTS_PER_STREAM") == streams.MAX_ELEMENTS_PER_STREAM
    assert ids == streams.ALL


def _perlin_inputs(shape, K, batch=2, seed=0):
    g = generator(seed)
    d = len(shape)
    fields = torch.randn(batch, K, grid_total([8, 4], d), generator=g)
    warps = max(shape) / 16 * torch.randn(batch, K, d, grid_total([16, 8, 4], d), generator=g)
    return fields, warps


def _team_sizes(shape=(24, 40, 33), K=5):
    """The thread count of each op's last parallel loop (the team OpenMP gave it: what was
    asked for, whichever threads then took the units)."""
    fields, warps = _perlin_inputs(shape, K)
    labels = torch.empty(2, *shape, dtype=torch.uint8)
    teams = {}
    philox_fill(torch.empty(2, 100_000), torch.tensor([3, 4]), 1, 2, "normal", backend="cpu")
    teams["philox_fill"] = cpu.last_team_size()
    gmm_shapes(labels, fields, warps, [8, 4], [16, 8, 4], backend="cpu")
    teams["gmm_shapes"] = cpu.last_team_size()
    config = rasd_kernels.SynthesisConfig()
    ws = rasd_kernels.params.make_workspace(2, shape, K, 1, config, "cpu")
    torch.arange(2, out=ws.sample_index)
    rasd_kernels.params.draw_appearance(ws, shape, config, 7, "cpu")
    teams["spline_maximum"] = cpu.last_team_size()
    image = torch.rand(2, 1, *shape, generator=generator(1))
    bias_field(image, ws.bias_coef, ws.scalars, backend="cpu")
    teams["bias_field"] = cpu.last_team_size()
    appearance(image, labels, ws.label_stats, ws.bias_coef, ws.scalars, ws.stats, ws.sample_index,
               7, backend="cpu")
    teams["appearance"] = cpu.last_team_size()
    return teams


OPS = ["philox_fill", "gmm_shapes", "spline_maximum", "bias_field", "appearance"]


def test_kernels_run_on_the_requested_threads(threads):
    """Every op's loops run on as many threads as asked: without OpenMP (or with a loop that
    is not parallel) this stays at 1. Which thread takes which unit is the scheduler's
    business and is not tested; that results do not depend on it is (below)."""
    assert _C.openmp > 0
    for n in (2, 3, 1):
        threads(n)
        assert cpu.get_num_threads() == n
        assert _team_sizes() == dict.fromkeys(OPS, n)


def test_team_size_is_per_calling_thread(threads):
    """Each Python thread reads the team size of its own last call."""
    import threading

    threads(2)
    _team_sizes()
    seen = []
    worker = threading.Thread(target=lambda: seen.append(cpu.last_team_size()))
    worker.start()
    worker.join()
    assert seen == [0] and cpu.last_team_size() == 2


@pytest.mark.parametrize("shape,K,views", [((21, 34, 29), 6, 2), ((67, 45), 11, 1)])
def test_synthesis_is_bit_identical_across_thread_counts(threads, shape, K, views):
    config = rasd_kernels.SynthesisConfig(texture_std_max=0.2, blur_sigma_max=1.5)
    out = {}
    for n in (1, 2):
        threads(n)
        out[n] = rasd_kernels.synthesize(3, shape, K, seed=11, start_index=5, config=config,
                                         views=views, backend="cpu")
    assert torch.equal(out[1][1], out[2][1])
    assert torch.equal(out[1][0], out[2][0])


@pytest.mark.parametrize("shape,K", [((19, 37, 45), 8), ((53, 70), 16)])
def test_avx512_and_portable_label_kernels_agree(shape, K):
    """The AVX-512 kernel (taken where the CPU has it) and the portable one compute the same
    float32 arithmetic in a different order: labels agree except at near ties."""
    fields, warps = _perlin_inputs(shape, K, seed=3)
    out = []
    for wide in (True, False):
        _C.allow_avx512(wide)
        try:
            labels = torch.empty(2, *shape, dtype=torch.uint8)
            out.append(gmm_shapes(labels, fields, warps, [8, 4], [16, 8, 4], backend="cpu"))
        finally:
            _C.allow_avx512(True)
    assert float((out[0] != out[1]).float().mean()) < 1e-4


def _labels_with_and_without_bounds(fields, warps, shape):
    out = []
    for bounded in (True, False):
        _C.allow_label_bounds(bounded)
        try:
            labels = torch.empty(fields.shape[0], *shape, dtype=torch.uint8)
            out.append(gmm_shapes(labels, fields, warps, [8, 4], [16, 8, 4], backend="cpu"))
        finally:
            _C.allow_label_bounds(True)
    return out


@pytest.mark.skipif(not _C.avx512_enabled(), reason="this CPU has no AVX-512")
@pytest.mark.parametrize("shape,K", [((150, 517), 16), ((64, 1100), 40), ((131, 21), 4)])
def test_label_bounds_change_no_label(shape, K):
    """The 2D AVX-512 kernel skips labels whose bound is below the best score so far: the
    labels must be those of scoring every label, bit for bit. Rows wider than one register
    group (517, 1100 columns), a partial vector (21 columns), units of rows that start unseeded
    (150 > 128 rows), positions pushed far outside (clamped), and exact ties: label 0 is
    constant, label 2 equal to it on the lower rows and above it on the upper ones, so where
    the row above took label 2 (the seed) the tie must still go to label 0."""
    fields, warps = _perlin_inputs(shape, K, seed=5)
    fields[:, 3:] *= 0.1
    fields[:, 1] *= 0.1
    fields[:, 0] = 1.0
    fields[:, 2] = 1.0
    fields[:, 2, 32:64] += 1.0  # rows 4..7 of the 8 x 8 grid
    fields[:, 2, 64:] = 0.0
    fields[:, 0, 64:] = 0.0
    warps[:, -1] *= 8.0
    bounded, every = _labels_with_and_without_bounds(fields, warps, shape)
    assert torch.equal(bounded, every)
    assert (every == 0).any() and (every == 2).any()


@pytest.mark.skipif(not _C.avx512_enabled(), reason="this CPU has no AVX-512")
@settings(max_examples=25, deadline=None)
@given(H=st.integers(16, 260), W=st.integers(16, 700), K=st.sampled_from([1, 2, 5, 16, 33, 255]),
       field_nodes=st.sampled_from([(8, 4), (4,), (6, 3), (8, 4, 2), (16, 8)]),
       warp_nodes=st.sampled_from([(16, 8, 4), (8, 4), (4,), (12, 5)]),
       field_scale=st.sampled_from([0.0, 1e-3, 1.0, 100.0]),
       warp_scale=st.sampled_from([0.0, 1.0, 30.0, 600.0]), copies=st.booleans(),
       seed=st.integers(0, 1 << 30))
def test_label_bounds_change_no_label_for_any_grids(H, W, K, field_nodes, warp_nodes,
                                                    field_scale, warp_scale, copies, seed):
    """The same as above over random sizes, label counts, grid sizes and amplitudes: zero
    fields (every label ties), copied labels (exact ties), warps far past the image."""
    g = generator(seed)
    fields = field_scale * torch.randn(2, K, grid_total(list(field_nodes), 2), generator=g)
    if copies:
        fields[:, K // 2:2 * (K // 2)] = fields[:, :K // 2]
    warps = warp_scale * torch.randn(2, K, 2, grid_total(list(warp_nodes), 2), generator=g)
    out = []
    for bounded in (True, False):
        _C.allow_label_bounds(bounded)
        try:
            labels = torch.empty(2, H, W, dtype=torch.uint8)
            out.append(gmm_shapes(labels, fields, warps, list(field_nodes), list(warp_nodes),
                                  backend="cpu"))
        finally:
            _C.allow_label_bounds(True)
    assert torch.equal(out[0], out[1])


@pytest.mark.skipif(not _C.avx512_enabled(), reason="this CPU has no AVX-512")
def test_avx512_and_portable_appearance_agree():
    """The hand-vectorised normals (philox_fill, and the noise of appearance, whose rows
    start inside Philox blocks when W is not a multiple of 4), label-stat lookup and bias rows
    against the portable loops: the same arithmetic up to the rounding of fused
    multiply-adds."""
    config = rasd_kernels.SynthesisConfig(texture_std_max=0.2)
    index = torch.tensor([3, 1 << 33, 0])
    out = []
    for wide in (True, False):
        _C.allow_avx512(wide)
        try:
            noise = philox_fill(torch.empty(3, 1237), index, 17, 7, "normal", backend="cpu")
            image, _ = rasd_kernels.synthesize(2, (17, 19, 23), 5, seed=4, config=config,
                                               backend="cpu")
            out.append((noise, image))
        finally:
            _C.allow_avx512(True)
    assert not torch.equal(out[0][0], torch.zeros_like(out[0][0]))
    torch.testing.assert_close(out[0][0], out[1][0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out[0][1], out[1][1], atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not _C.avx512_enabled(), reason="this CPU has no AVX-512")
@pytest.mark.parametrize("gamma", [0.02, 0.5, 1.0, 1.7, 9.0])
def test_avx512_appearance_rows_match_portable_and_reference(gamma):
    """The AVX-512 rows of appearance (appearance_avx512.cpp: mean e^psi without texture, and
    the gamma curve 2^(gamma log2 v), log2 from a table of cubics) against the portable exp and
    pow and, where the curve does not blow up rounding near 0 (gamma >= 0.5), the float64
    reference, over gammas well outside the presets' range."""
    from test_appearance import IMAGE_ATOL, random_inputs, run
    from rasd_kernels.layout import scalar_slices

    labels, stats, coef, scalars, index = random_inputs((12, 17, 23), 5, False, seed=11)
    scalars[..., scalar_slices(3)["gamma"]] = gamma
    out = []
    for wide in (True, False):
        _C.allow_avx512(wide)
        try:
            out.append(run("cpu", torch.device("cpu"), labels, stats, coef, scalars, index)[0])
        finally:
            _C.allow_avx512(True)
    assert float(out[0].std()) > 1e-3  # not a constant image
    # The same values up to float rounding (upstream fused multiply-adds included), which a
    # steep curve amplifies: gamma v^(gamma - 1) <= 9 near v = 1.
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=5e-6)
    if gamma >= 0.5:
        expected = run("reference", torch.device("cpu"), labels, stats, coef, scalars, index)[0]
        torch.testing.assert_close(out[0], expected, rtol=0, atol=IMAGE_ATOL)


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def test_gmm_shapes_builds_no_full_resolution_intermediate(threads):
    """128^3, K = 8: one full-resolution float field is 8 MiB, the reference path would hold
    K of them; the kernel's peak memory growth must stay far below one."""
    threads(2)
    shape, K = (128, 128, 128), 8
    fields, warps = _perlin_inputs(shape, K, batch=1)
    labels = torch.empty(1, *shape, dtype=torch.uint8)
    labels.fill_(0)  # touch the output pages before measuring
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set size to the current one
    before = _peak_rss_bytes()
    gmm_shapes(labels, fields, warps, [8, 4], [16, 8, 4], backend="cpu")
    growth = _peak_rss_bytes() - before
    full_field = 4 * 128 ** 3
    assert growth < full_field / 8, f"peak RSS grew by {growth / 2**20:.1f} MiB"
    assert int(labels.max()) < K and int(labels.min()) >= 0
