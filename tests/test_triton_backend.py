"""Triton backend specifics: the Philox device code word for word, the GPU tile sizes under the
interpreter, the kernels compiled for sm_90, torch.compile and CUDA graphs.

The generic op tests (test_<op>.py) already compare every op of this backend to the reference;
here are the properties that only the Triton code has.
"""

import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import KERNEL_BACKENDS, KNOWN_ANSWERS, generator  # first: sets TRITON_INTERPRET

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

import rasd_kernels as rk  # noqa: E402
from rasd_kernels import backends  # noqa: E402
from rasd_kernels.reference import philox as ref_philox  # noqa: E402
from rasd_kernels.triton import _launch, philox  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICE = torch.device("cpu") if backends.interpreting_triton() else torch.device("cuda")

# float32 Box-Muller against float64 on identical words (as in test_philox_fill).
NORMAL_TOL = 1e-5
SMALL = rk.SynthesisConfig(field_nodes=(4, 3), warp_nodes=(5, 3), bias_fwhm_min=4.0,
                           bias_fwhm_max=8.0, texture_std_max=0.1)


# ---- Philox device functions, through tiny test kernels -----------------------------------

@triton.jit
def _rounds_kernel(counter_ptr, key_ptr, out_ptr, n, BLOCK: tl.constexpr):
    """out[i, :] = Philox4x32-10(counter[i, :], key[i, :]) (words stored in int64)."""
    i = tl.arange(0, BLOCK)
    m = i < n
    c0 = tl.load(counter_ptr + 4 * i, mask=m, other=0).to(tl.uint32)
    c1 = tl.load(counter_ptr + 4 * i + 1, mask=m, other=0).to(tl.uint32)
    c2 = tl.load(counter_ptr + 4 * i + 2, mask=m, other=0).to(tl.uint32)
    c3 = tl.load(counter_ptr + 4 * i + 3, mask=m, other=0).to(tl.uint32)
    k0 = tl.load(key_ptr + 2 * i, mask=m, other=0).to(tl.uint32)
    k1 = tl.load(key_ptr + 2 * i + 1, mask=m, other=0).to(tl.uint32)
    r0, r1, r2, r3 = philox.philox4x32_10(c0, c1, c2, c3, k0, k1)
    tl.store(out_ptr + 4 * i, r0.to(tl.int64), mask=m)
    tl.store(out_ptr + 4 * i + 1, r1.to(tl.int64), mask=m)
    tl.store(out_ptr + 4 * i + 2, r2.to(tl.int64), mask=m)
    tl.store(out_ptr + 4 * i + 3, r3.to(tl.int64), mask=m)


def _rounds(counters: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    out = torch.empty(counters.shape[0], 4, dtype=torch.int64, device=DEVICE)
    n = counters.shape[0]
    _rounds_kernel[(1,)](counters.to(DEVICE).contiguous(), keys.to(DEVICE).contiguous(), out, n,
                         BLOCK=triton.next_power_of_2(n))
    return out.cpu()


@pytest.mark.parametrize("counter,key,expected", KNOWN_ANSWERS)
def test_rounds_known_answers(counter, key, expected):
    got = _rounds(torch.tensor([counter]), torch.tensor([key]))
    assert tuple(int(w) for w in got[0]) == expected


def test_rounds_equal_the_reference_on_random_words():
    g = generator(1)
    counters = torch.randint(0, 1 << 32, (1000, 4), generator=g)
    keys = torch.randint(0, 1 << 32, (1000, 2), generator=g)
    expected = torch.stack(ref_philox.philox4x32_10(counters.unbind(1), keys.unbind(1)), 1)
    assert torch.equal(_rounds(counters, keys), expected)


@triton.jit
def _randint4x_kernel(out_ptr, seed, BLOCK: tl.constexpr):
    """Triton's own Philox (counter (offset, 0, 0, 0)) next to ours on the same words."""
    offset = tl.arange(0, BLOCK)
    t0, t1, t2, t3 = tl.randint4x(seed, offset)
    k0, k1 = philox.key_words(seed)
    zero = tl.zeros([BLOCK], tl.uint32)
    o0, o1, o2, o3 = philox.philox4x32_10(offset.to(tl.uint32), zero, zero, zero, k0, k1)
    row = out_ptr + 8 * offset
    tl.store(row, t0.to(tl.uint32, bitcast=True).to(tl.int64))
    tl.store(row + 1, t1.to(tl.uint32, bitcast=True).to(tl.int64))
    tl.store(row + 2, t2.to(tl.uint32, bitcast=True).to(tl.int64))
    tl.store(row + 3, t3.to(tl.uint32, bitcast=True).to(tl.int64))
    tl.store(row + 4, o0.to(tl.int64))
    tl.store(row + 5, o1.to(tl.int64))
    tl.store(row + 6, o2.to(tl.int64))
    tl.store(row + 7, o3.to(tl.int64))


@pytest.mark.parametrize("seed", [0, 12345, (1 << 40) + 7])
def test_rounds_equal_tl_randint4x(seed):
    out = torch.empty(64, 8, dtype=torch.int64, device=DEVICE)
    _randint4x_kernel[(1,)](out, seed, BLOCK=64)
    out = out.cpu()
    assert torch.equal(out[:, :4], out[:, 4:])


@triton.jit
def _per_element_kernel(u_ptr, z_ptr, element_ptr, sample_ptr, seed, stream, n,
                        BLOCK: tl.constexpr):
    """The per-voxel draws of the appearance kernels at arbitrary elements."""
    i = tl.arange(0, BLOCK)
    m = i < n
    element = tl.load(element_ptr + i, mask=m, other=0)
    sample = tl.load(sample_ptr)
    tl.store(u_ptr + i, philox.uniform_at(seed, sample, stream, element), mask=m)
    tl.store(z_ptr + i, philox.normal_at(seed, sample, stream, element), mask=m)


@pytest.mark.parametrize("seed,sample,stream", [(0, 0, 0), (7, (1 << 33) + 5, 6),
                                                ((1 << 62) + 11, 123456789, (1 << 32) - 1)])
def test_per_element_draws_match_the_reference(seed, sample, stream):
    """Odd, unaligned element indices (a * V + voxel with V odd), all four word slots, and
    counters beyond 32 bits (element >> 2 up to 2^32 - 1)."""
    g = generator(seed % 1000)
    element = torch.cat([torch.arange(3 * 1331, 3 * 1331 + 37),
                         torch.randint(0, 1 << 34, (200,), generator=g)])
    n = element.numel()
    u = torch.empty(n, device=DEVICE)
    z = torch.empty(n, device=DEVICE)
    _per_element_kernel[(1,)](u, z, element.to(DEVICE), torch.tensor([sample], device=DEVICE),
                              seed, stream, n, BLOCK=triton.next_power_of_2(n))
    assert torch.equal(u.cpu().double(), ref_philox.uniform(seed, sample, stream, element))
    torch.testing.assert_close(z.cpu().double(), ref_philox.normal(seed, sample, stream, element),
                               atol=NORMAL_TOL, rtol=NORMAL_TOL)


# ---- GPU tile sizes, run by the interpreter ------------------------------------------------

@pytest.fixture
def gpu_tiles(monkeypatch):
    """Launch with the tile sizes a GPU gets: many programs per sample, partial tiles."""
    monkeypatch.setattr(_launch, "FORCE_GPU_TILES", True)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 4097), (2, 3, 7, 101)])
def test_philox_fill_odd_sizes_with_gpu_tiles(gpu_tiles, shape):
    index = torch.tensor([5, (1 << 35) + 1][: shape[0]] + [9] * max(0, shape[0] - 2))
    for distribution in ("uniform", "normal"):
        out = torch.full(shape, float("nan"), device=DEVICE)
        rk.ops.philox_fill(out, index.to(DEVICE), 99, 4, distribution, backend="triton")
        expected = ref_philox.fill(shape, index, 99, 4, distribution)
        if distribution == "uniform":
            assert torch.equal(out.cpu().double(), expected)
        else:
            torch.testing.assert_close(out.cpu().double(), expected, atol=NORMAL_TOL,
                                       rtol=NORMAL_TOL)


@pytest.mark.parametrize("shape,K,config", [
    ((9, 10, 11), 4, SMALL),
    ((40, 21), 5, SMALL.replace(shapes="blobs")),
])
def test_gpu_tiles_give_the_same_samples_bit_for_bit(monkeypatch, shape, K, config):
    """Every voxel's arithmetic is independent of the tiling (the reductions are min / max),
    so the GPU tiles (several programs per line, masked borders, blur lines split across
    programs) must reproduce the whole-sample tiles exactly."""
    def run():
        return rk.synthesize(1, shape, K, seed=3, start_index=10, device=DEVICE, config=config,
                             views=2, backend="triton")

    image, label = run()
    monkeypatch.setattr(_launch, "FORCE_GPU_TILES", True)
    tiled_image, tiled_label = run()
    assert torch.equal(label, tiled_label)
    assert torch.equal(image, tiled_image)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0


# ---- compiled kernels, torch.compile, CUDA graphs ------------------------------------------

def _env_without_interpreter() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    return env


def test_every_kernel_compiles_for_sm90():
    """The interpreter accepts code the compiler rejects (globals, constexpr rules, int
    widths): compile every launch for sm_90 with Triton's bundled ptxas; no GPU needed."""
    result = subprocess.run([sys.executable, "-m", "rasd_kernels.triton.compile_check",
                             "--arch", "90"], capture_output=True, text=True, timeout=300,
                            env=_env_without_interpreter(), cwd=ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    local = re.findall(r"LOCAL:(\d+)", result.stdout)
    assert local and set(local) == {"0"}, result.stdout   # no spills to local memory


def test_unavailable_reason_names_the_fix_without_gpu_or_interpreter():
    code = "from rasd_kernels import backends; print(backends.unavailable_reason('triton'))"
    env = dict(_env_without_interpreter(), CUDA_VISIBLE_DEVICES="")   # hide any GPU
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env=env, cwd=ROOT)
    assert "TRITON_INTERPRET=1" in result.stdout, result.stdout + result.stderr
    assert backends.unavailable_reason("triton") is None   # here: interpreter or CUDA


def test_fullgraph_compile_with_the_triton_backend():
    """The ops are opaque custom ops with fake implementations, so dynamo traces
    synthesize_into in one graph and AOT autograd functionalises the in-place ops, even
    though the kernels are Triton (interpreted here). aot_eager stops before Inductor's code
    generation, which test_compile.py covers and which only adds minutes on a CPU."""
    def step(image, label, start):
        rk.synthesize_into(image, label, num_labels=3, seed=1, start_index=start, config=SMALL,
                           backend="triton")
        return image.mean()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    image = torch.empty(2, 1, 12, 13, device=DEVICE)
    label = torch.empty(2, 12, 13, dtype=torch.uint8, device=DEVICE)
    eager_image, eager_label = torch.empty_like(image), torch.empty_like(label)
    for start in (7, 8):                       # the index is data, not a baked constant
        compiled(image, label, torch.tensor(start, device=DEVICE))
        step(eager_image, eager_label, torch.tensor(start, device=DEVICE))
        assert torch.equal(label, eager_label) and torch.equal(image, eager_image)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("backend", [b for b in ("triton", "cuda") if b in KERNEL_BACKENDS])
def test_cuda_graph_capture_and_replay(backend):
    """No host sync and no allocation in the hot path: one captured synthesis, replayed with a
    new start index on the device, equals a fresh eager call."""
    shape, K = (24, 20), 6
    image = torch.empty(2, 1, *shape, device="cuda")
    label = torch.empty(2, *shape, dtype=torch.uint8, device="cuda")
    start = torch.tensor(0, device="cuda")

    def call():
        rk.synthesize_into(image, label, num_labels=K, seed=5, start_index=start, config=SMALL,
                           backend=backend)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):              # warm up: compile kernels, build the workspace
        call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    for index in (42, 7):
        start.fill_(index)
        graph.replay()
        expected_image, expected_label = rk.synthesize(2, shape, K, seed=5, start_index=index,
                                                       device="cuda", config=SMALL,
                                                       backend=backend)
        torch.cuda.synchronize()
        assert torch.equal(label, expected_label) and torch.equal(image, expected_image)
