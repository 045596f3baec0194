"""The CUDA backend: csrc/cuda/*.cu and rasd_kernels/backends/cuda.py.

Without a GPU:
  * every kernel file compiles with nvcc for sm_90, and module.cpp with the host compiler;
  * all kernels compile through NVRTC (the CuPy fallback) and the parameters in their PTX
    match the launch table of the Python layer;
  * the kernels run under a CPU emulation of the CUDA execution model (csrc/cuda/emulation:
    one thread per CUDA thread, real barriers, poisoned shared memory with an overflow guard)
    with the real launch geometry, and match the float64 reference.
With a GPU (skipped otherwise): the cuda backend against the reference and the CPU backend,
the compiled module against the CuPy path, and CUDA-graph capture of synthesize_into. The
generic op tests (tests/test_<op>.py) also run the cuda backend there.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rasd_kernels as rk
from rasd_kernels import backends, params
from rasd_kernels.backends import cuda
from rasd_kernels.layout import grid_total, scalar_count, scalar_slices, set_no_acquisition
from rasd_kernels.reference import philox

from conftest import MAX_TIE_FRACTION, assert_labels_match, generator, random_blob_params

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
ref_bias = importlib.import_module("rasd_kernels.reference.bias_field")
ref_app = importlib.import_module("rasd_kernels.reference.appearance")

GPU = torch.cuda.is_available() and cuda.unavailable_reason() is None
needs_gpu = pytest.mark.skipif(not GPU, reason="needs a CUDA device")

# Float tolerances against the float64 reference (the same as tests/test_<op>.py): labels may
# differ only at near-ties, images within IMAGE_ATOL after normalisation and gamma.
IMAGE_ATOL, STATS_RTOL, BIAS_RTOL, NORMAL_ATOL = 2e-4, 1e-5, 1e-5, 1e-6


# ---- compile checks --------------------------------------------------------------------------

def _run_all(commands) -> list[tuple[int, str]]:
    """Run the commands in parallel: (exit status, output) of each."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for c in commands]
    return [(p.wait(), p.communicate()[0]) for p in procs]


def _failures(commands, results) -> str:
    return "\n\n".join(f"{' '.join(c)}\n{out}" for c, (rc, out) in zip(commands, results) if rc)


def test_kernel_files_compile_for_sm90_and_module_with_the_host_compiler(tmp_path):
    assert shutil.which("nvcc"), "nvcc (the CUDA toolkit) must be on PATH: every .cu file is compiled"
    """Also: each kernel's static shared memory leaves room for the launch plans' dynamic
    budget within the 48 KiB every GPU grants, and no kernel spills registers on sm_90."""
    import pybind11
    import sysconfig
    nvcc = [["nvcc", "-std=c++17", "-arch=sm_90", "-Xptxas=-v", "-c", str(CSRC / "cuda" / f),
             "-I", str(CSRC), "-o", str(tmp_path / (f + ".o"))] for f in cuda.SOURCES]
    module = ["g++", "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
              str(CSRC / "cuda" / "module.cpp"), "-I", str(_cuda_include()), "-I",
              pybind11.get_include(), "-I", sysconfig.get_paths()["include"]]
    results = _run_all(nvcc + [module])
    assert not any(rc for rc, _ in results), _failures(nvcc + [module], results)
    log = "".join(out for _, out in results[:-1])
    kernels = re.findall(r"Compiling entry function '(\w+)'.*?Used (\d+) registers([^\n]*)",
                         log, re.S)
    assert {name for name, _, _ in kernels} == set(cuda.SIGNATURES)
    for name, _, rest in kernels:
        static = re.search(r"(\d+) bytes smem", rest)
        assert (int(static.group(1)) if static else 0) + cuda.SHARED_BYTES <= 48 * 1024, name
    spills = re.findall(r"(\d+) bytes spill stores", log)
    assert spills and not any(int(n) for n in spills), log


def _require_nvrtc():
    """NVRTC comes with the test extra (cupy-cuda13x, nvidia-cuda-nvrtc): absent, this fails."""
    from cupy.cuda import nvrtc
    nvrtc.getVersion()


def _cuda_include() -> Path:
    """The toolkit's include folder (for cuda_runtime_api.h)."""
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
             Path(shutil.which("nvcc")).resolve().parent.parent, "/usr/local/cuda"]
    for root in filter(None, roots):
        if (Path(root) / "include" / "cuda_runtime_api.h").is_file():
            return Path(root) / "include"
    pytest.fail("nvcc is on PATH but cuda_runtime_api.h is not in its toolkit")


_PTX_BYTES = {"P": 8, "q": 8, "Q": 8, "i": 4, "I": 4}


def test_nvrtc_compiles_every_kernel_with_the_launch_table_signatures():
    """The CuPy path compiles, and each kernel's parameters in the PTX have the sizes that
    pack_arguments gives them (a wrong table would scramble every launch)."""
    _require_nvrtc()
    ptx = cuda.compile_ptx("compute_90")
    entries = dict(re.findall(r"\.entry\s+(\w+)\s*\(([^)]*)\)", ptx))
    assert set(entries) == set(cuda.SIGNATURES)
    for name, params in entries.items():
        sizes = [int(b) // 8 for b in re.findall(r"\.param\s+\.[bsuf](\d+)", params)]
        assert sizes == [_PTX_BYTES[c] for c in cuda.SIGNATURES[name]], name


def test_kernel_source_inlines_only_installed_files():
    """Every file the run-time compiled source pulls in is installed with the package."""
    source = cuda.kernel_source()
    files = set(re.findall(r'#line 1 "([^"]+)"', source))
    cmake = (CSRC / "cuda" / "CMakeLists.txt").read_text()
    installed = set(re.search(r"install\(FILES([^)]*)DESTINATION", cmake).group(1).split())
    assert {f"cuda/{name}" for name in cuda.SOURCES} <= files
    for f in files:
        folder, name = f.split("/")
        assert (folder == "common" and name.endswith(".h")) or (folder == "cuda"
                                                               and name in installed), f
    assert not re.search(r"^\s*#\s*include\s*<(cstdint|cstring|cmath)>", source, re.M)


# ---- launch plans and argument packing ---------------------------------------------------------

def test_arguments_are_packed_at_aligned_offsets():
    blob, offsets = cuda.pack_arguments("rasd_philox_fill", [16, 32, 2, 7, 5, 3, 1])
    assert offsets == [0, 8, 16, 24, 32, 40, 44]
    assert blob[40:44] == (3).to_bytes(4, "little") and len(blob) == 48
    blob, offsets = cuda.pack_arguments("rasd_appearance_blur_axis_3d",
                                        [1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert offsets == [0, 8, 16, 24, 32, 40, 48, 56, 60]
    with pytest.raises(TypeError, match="takes 7 arguments"):
        cuda.pack_arguments("rasd_philox_fill", [1, 2])


def test_node_counts_pack_into_one_word_and_limits_are_named():
    assert cuda.pack_nodes("w", [16, 8, 4]) == 3 | 16 << 4 | 8 << 14 | 4 << 24
    with pytest.raises(ValueError, match="1 to 6 scales"):
        cuda.pack_nodes("warp_nodes", [4] * 7)
    with pytest.raises(ValueError, match="warp_nodes"):
        cuda.pack_nodes("warp_nodes", [2000])


@pytest.mark.parametrize("preset", ["rasd3d", "rasd2d"])
def test_preset_plans_use_one_label_chunk_and_fit_shared_memory(preset):
    from rasd_kernels.config import PRESETS
    shape, K, config = PRESETS[preset]
    grid, block, shared, chunk, in_smem = cuda.gmm_plan(shape, K, config.field_nodes,
                                                        config.warp_nodes, "perlin")
    assert (chunk, in_smem) == (K, 1)  # every label in one pass over the staged data
    assert math.prod(block) <= cuda.GMM_THREADS and shared <= cuda.SHARED_BYTES
    assert grid[0] * block[0] >= shape[-1] and grid[1] * block[1] >= math.prod(shape[:-1])
    nodes = config.bias_nodes_for(shape)
    for extra in (0, shape[-1]):
        rows, tiles, shared = cuda.row_plan(shape, nodes[-1], 1024, extra)
        assert rows * tiles >= math.prod(shape[:-1]) and shared <= cuda.SHARED_BYTES
    for axis in range(len(shape) - 1):
        *_, tile, tiles, shared = cuda.blur_plan(shape, axis)
        assert tile >= 16 and shared <= cuda.SHARED_BYTES  # segments of >= 64 bytes


def test_unavailable_reason_names_what_to_install_or_the_missing_device(monkeypatch):
    cuda.unavailable_reason.cache_clear()
    try:
        monkeypatch.setattr(cuda, "_launcher", lambda: (None, "no kernels: pip install x"))
        assert cuda.unavailable_reason() == "no kernels: pip install x"
        cuda.unavailable_reason.cache_clear()

        class NoDevice:
            def device_count(self):
                return 0, "cudaErrorNoDevice"
        monkeypatch.setattr(cuda, "_launcher", lambda: (NoDevice(), ""))
        assert "no CUDA device (cudaErrorNoDevice)" in cuda.unavailable_reason()
    finally:
        cuda.unavailable_reason.cache_clear()


def test_missing_kernels_message_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # importing either now raises ImportError
    monkeypatch.setitem(sys.modules, "rasd_kernels._cuda", None)
    monkeypatch.delattr(importlib.import_module("rasd_kernels"), "_cuda", raising=False)
    cuda._launcher.cache_clear()
    try:
        launcher, why = cuda._launcher()
        assert launcher is None
        assert "pip install cupy-cuda13x" in why and "CUDA toolkit" in why
    finally:
        cuda._launcher.cache_clear()


def test_compiled_module_imports_without_a_device_and_lists_every_kernel():
    """Where rasd_kernels._cuda was built (RASD_BUILD_CUDA), importing it needs no GPU."""
    from rasd_kernels import _cuda     # the build makes it wherever nvcc is found
    assert set(_cuda.kernel_names()) == set(cuda.SIGNATURES)
    count, why = _cuda.device_count()
    if not GPU:
        assert count == 0 and why
        with pytest.raises(RuntimeError, match="cuda"):
            _cuda.launch("rasd_appearance_init", (1, 1, 1), (32, 1, 1), 0, 0, 0,
                         *cuda.pack_arguments("rasd_appearance_init", [0, 0]))
    with pytest.raises(ValueError, match="no CUDA kernel named"):
        _cuda.launch("nope", (1, 1, 1), (1, 1, 1), 0, 0, 0, b"", [])


def test_without_a_device_the_backend_is_reported_unavailable():
    if GPU:
        pytest.skip("a CUDA device is present")
    reason = backends.unavailable_reason("cuda")
    assert reason is not None and ("no CUDA device" in reason or "pip install" in reason
                                   or "torch cannot use" in reason)


# ---- the CPU emulation ---------------------------------------------------------------------------

EMULATION = CSRC / "cuda" / "emulation"


def _build_emulation() -> Path:
    """librasd_emu.so from the kernel sources (cached under build/ by a hash of the sources)."""
    files = sorted((CSRC / "common").glob("*.h")) + sorted((CSRC / "cuda").glob("*.*")) + \
        sorted(EMULATION.glob("*.*"))
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
    out = ROOT / "build" / "cuda-emulation" / digest
    lib = out / "librasd_emu.so"
    if lib.exists():
        return lib
    out.mkdir(parents=True, exist_ok=True)
    flags = ["g++", "-std=c++20", "-O1", "-fPIC", "-include", str(EMULATION / "emulate.h"),
             "-I", str(CSRC)]
    objects = [out / f"{Path(f).stem}.o" for f in (*cuda.SOURCES, "emulate.cpp")]
    commands = [flags + ["-x", "c++", "-c", str(CSRC / "cuda" / f), "-o", str(o)]
                for f, o in zip(cuda.SOURCES, objects)]
    commands.append(flags + ["-c", str(EMULATION / "emulate.cpp"), "-o", str(objects[-1])])
    results = _run_all(commands)
    assert not any(rc for rc, _ in results), _failures(commands, results)
    tmp = out / f"lib.{os.getpid()}.so"
    subprocess.run(["g++", "-shared", "-o", str(tmp), *map(str, objects), "-lpthread"],
                   check=True)
    tmp.replace(lib)
    return lib


class EmulatedLauncher:
    """The launcher interface of rasd_kernels._cuda on top of the emulation; `clamp` shrinks
    the grid (the kernels' grid-stride loops must still cover everything)."""

    def __init__(self, lib: ctypes.CDLL, clamp: int | None = None):
        self.lib, self.clamp = lib, clamp

    def launch(self, name, grid, block, shared_bytes, stream, device, args, offsets):
        assert device == -1 and stream == 0
        assert math.prod(block) <= 1024 and shared_bytes <= cuda.SHARED_BYTES
        if self.clamp is not None:  # gmm kernels need every column block (no loop along x)
            keep_x = name.startswith("rasd_gmm")
            grid = tuple(g if (keep_x and i == 0) else min(g, self.clamp)
                         for i, g in enumerate(grid))
        error = self.lib.rasd_emu_launch(name.encode(), (ctypes.c_uint * 3)(*grid),
                                         (ctypes.c_uint * 3)(*block), shared_bytes, args,
                                         (ctypes.c_size_t * len(offsets))(*offsets),
                                         len(offsets))
        if error:
            raise RuntimeError(error.decode())


@pytest.fixture(scope="module")
def emulation_lib():
    assert shutil.which("g++"), "the CUDA emulation needs g++"
    lib = ctypes.CDLL(str(_build_emulation()))
    lib.rasd_emu_launch.restype = ctypes.c_char_p
    lib.rasd_emu_launch.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint),
                                    ctypes.POINTER(ctypes.c_uint), ctypes.c_size_t,
                                    ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t),
                                    ctypes.c_int]
    return lib


@pytest.fixture(scope="module")
def emulated(emulation_lib) -> cuda.Kernels:
    return cuda.Kernels(EmulatedLauncher(emulation_lib))


# ---- inputs and comparisons (shared by the emulated and the GPU tests) --------------------------

def perlin_inputs(shape, K, field_nodes, warp_nodes, seed, batch=2):
    g = generator(seed)
    d = len(shape)
    fields = torch.randn(batch, K, grid_total(field_nodes, d), generator=g)
    warps = torch.randn(batch, K, d, grid_total(warp_nodes, d), generator=g)
    warps *= max(shape) / 16 * (0.5 + torch.rand(batch, 1, 1, 1, generator=g))
    return fields, warps


def blob_inputs(shape, K, warp_nodes, seed, batch=2):
    g = generator(seed)
    d = len(shape)
    fields = random_blob_params(shape, K, batch, g)
    warps = 2.0 * torch.randn(batch, 1, d, grid_total(warp_nodes, d), generator=g)
    return fields, warps



def appearance_inputs(shape, K, texture, seed, sigma=None, batch=2, apps=2):
    g = generator(seed)
    d = len(shape)
    labels = torch.randint(0, K, (batch, *shape), generator=g, dtype=torch.uint8)
    stats = torch.stack([torch.rand(batch, apps, K, generator=g),
                         0.2 * torch.rand(batch, apps, K, generator=g) * texture], -1)
    coef = 0.2 * torch.randn(batch, apps, *[int((n - 1) / 3) + 4 for n in shape], generator=g)
    s = torch.empty(batch, apps, scalar_count(d))
    sl = scalar_slices(d)
    s[..., sl["bias_spacing"]] = 3 + 6 * torch.rand(batch, apps, d, generator=g)
    s[..., sl["bias_offset"]] = torch.rand(batch, apps, d, generator=g)
    s[..., sl["noise_std"]] = 0.05 + 0.35 * torch.rand(batch, apps, 1, generator=g)
    s[..., sl["blur_sigma"]] = torch.rand(batch, apps, d, generator=g) if sigma is None \
        else torch.tensor(sigma, dtype=torch.float32)
    s[..., sl["gamma"]] = 0.5 + torch.rand(batch, apps, 1, generator=g)
    set_no_acquisition(s, d)
    index = torch.randint(0, 1 << 40, (batch,), generator=g)
    return labels, stats, coef, s, index


def reference_appearance(labels, stats, coef, s, index, seed=7):
    batch, apps = stats.shape[:2]
    image = torch.empty(batch, apps, *labels.shape[1:])
    out = torch.empty(batch, apps, 4)
    ref_app.appearance(image, labels, stats, coef, s, out, index, seed)
    return image, out


def run_appearance(kernels, device, labels, stats, coef, s, index, seed=7):
    batch, apps = stats.shape[:2]
    image = torch.full((batch, apps, *labels.shape[1:]), float("nan"), device=device)
    out = torch.full((batch, apps, 4), float("nan"), device=device)
    kernels.appearance(image, labels.to(device), stats.to(device), coef.to(device),
                       s.to(device), out, index.to(device), seed)
    return image.cpu(), out.cpu()


def assert_appearance_close(image, out, expected, expected_stats):
    torch.testing.assert_close(out, expected_stats, rtol=STATS_RTOL, atol=1e-6)
    torch.testing.assert_close(image, expected, rtol=0, atol=IMAGE_ATOL)


# ---- emulated kernels against the reference ------------------------------------------------------

@pytest.mark.parametrize("distribution", ["normal", "uniform"])
@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 1), (1, 4, 4)])
def test_emulated_philox_fill(emulated, distribution, shape):
    """Uniforms bit for bit; normals to float rounding (Box-Muller in float32)."""
    index = torch.tensor([0, 5, (1 << 40) + 3])[: shape[0]]
    out = torch.full(shape, float("nan"))
    emulated.philox_fill(out, index, 123456789012, 3, distribution)
    expected = philox.fill(shape, index, 123456789012, 3, distribution)
    if distribution == "uniform":
        assert torch.equal(out.double(), expected)
    else:
        assert float((out.double() - expected).abs().max()) < NORMAL_ATOL * 4


GMM_CASES = [  # (shape, K, field nodes, warp nodes, mode); the last two force label chunks
    # and field grids read from global memory (too large for shared memory)
    ((7, 9, 11), 3, [4, 3], [5, 3], "perlin"),
    ((33, 37), 16, [8, 4], [16, 8, 4], "perlin"),
    ((10, 13), 2, [3], [4, 2], "perlin"),
    ((6, 7, 9), 20, [12, 4], [4], "perlin"),
    ((5, 6, 30), 2, [25], [3], "perlin"),
    ((9, 12, 10), 5, [], [5, 3], "blobs"),
    ((31, 26), 7, [], [16, 8, 4], "blobs"),
]


@pytest.mark.parametrize("case", range(len(GMM_CASES)))
def test_emulated_gmm_shapes(emulated, case):
    shape, K, fn, wn, mode = GMM_CASES[case]
    if case == 3:
        assert cuda.gmm_plan(shape, K, fn, wn, mode)[3] < K      # several label chunks
    if case == 4:
        assert cuda.gmm_plan(shape, K, fn, wn, mode)[4] == 0     # fields from global memory
    fields, warps = perlin_inputs(shape, K, fn, wn, case) if mode == "perlin" \
        else blob_inputs(shape, K, wn, case)
    labels = torch.full((2, *shape), 255, dtype=torch.uint8)
    emulated.gmm_shapes(labels, fields, warps, fn, wn, mode)
    assert int(labels.max()) < K
    assert_labels_match(labels, fields, warps, fn, wn, mode)


@pytest.mark.parametrize("shape", [(7, 9, 11), (33, 37)])
def test_emulated_bias_field(emulated, shape):
    _, _, coef, s, _ = appearance_inputs(shape, 3, False, 1)
    x = 0.5 + torch.rand(2, 2, *shape, generator=generator(2))
    got = x.clone()
    emulated.bias_field(got, coef, s)
    expected = x.double()
    ref_bias.bias_field(expected, coef, s)
    assert float(((got.double() - expected) / expected).abs().max()) < BIAS_RTOL


APPEARANCE_CASES = [  # (shape, K, texture, blur sigmas or None for random ones)
    ((7, 9, 11), 3, True, None),
    ((33, 37), 16, False, None),
    ((6, 7, 8), 4, False, [0.0, 0.0, 0.8]),   # only W blurs: the W pass takes min / max
    ((6, 7, 8), 4, True, [0.0, 0.0, 0.0]),    # no blur at all
    ((5, 6, 7), 3, False, [0.7, 0.0, 0.0]),   # only D blurs
    ((30, 33), 3, False, [4.6, 0.3]),         # radius 14 > MAX_BLUR_RADIUS: taps on the fly
]


@pytest.mark.parametrize("case", range(len(APPEARANCE_CASES)))
def test_emulated_appearance(emulated, case):
    shape, K, texture, sigma = APPEARANCE_CASES[case]
    inputs = appearance_inputs(shape, K, texture, case, sigma)
    image, out = run_appearance(emulated, "cpu", *inputs)
    assert_appearance_close(image, out, *reference_appearance(*inputs))
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0


def test_emulation_catches_a_shared_memory_overflow(emulation_lib):
    """The harness itself: a launch given less dynamic shared memory than its plan fails."""
    shape = (6, 40)
    image, coef = torch.ones(1, 1, *shape), torch.zeros(1, 1, 5, 17)
    scalars = torch.tensor([[[3.0, 3.0, 0.5, 0.5]]])
    rows, tiles, shared = cuda.row_plan(shape, 17, 1024)
    args, offsets = cuda.pack_arguments("rasd_bias_field_2d", [
        image.data_ptr(), coef.data_ptr(), scalars.data_ptr(), 1, 1, *shape, 1, 5, 17, 4, rows])
    launcher = EmulatedLauncher(emulation_lib)
    launcher.launch("rasd_bias_field_2d", (tiles, 1, 1), (64, 1, 1), shared, 0, -1, args,
                    offsets)
    assert torch.equal(image, torch.ones_like(image))  # exp(0)
    with pytest.raises(RuntimeError, match="shared memory overflow"):
        launcher.launch("rasd_bias_field_2d", (tiles, 1, 1), (64, 1, 1), shared - 256, 0, -1,
                        args, offsets)


def test_emulated_results_do_not_depend_on_the_grid(emulation_lib, emulated):
    """A grid of at most 2 blocks per dimension (but all gmm column blocks) gives the same
    bits: every kernel's grid-stride loops cover the whole problem."""
    small = cuda.Kernels(EmulatedLauncher(emulation_lib, clamp=2))
    index = torch.tensor([11, 12, 13])
    a, b = torch.empty(3, 1001), torch.empty(3, 1001)
    emulated.philox_fill(a, index, 5, 2, "normal")
    small.philox_fill(b, index, 5, 2, "normal")
    assert torch.equal(a, b)
    shape, K, fn, wn = (9, 10, 7), 4, [4], [3]
    fields, warps = perlin_inputs(shape, K, fn, wn, 0, batch=3)
    la, lb = (torch.empty(3, *shape, dtype=torch.uint8) for _ in range(2))
    emulated.gmm_shapes(la, fields, warps, fn, wn, "perlin")
    small.gmm_shapes(lb, fields, warps, fn, wn, "perlin")
    assert torch.equal(la, lb)
    inputs = appearance_inputs((6, 9, 8), 3, True, 4, batch=3)
    assert all(torch.equal(x, y) for x, y in zip(run_appearance(emulated, "cpu", *inputs),
                                                 run_appearance(small, "cpu", *inputs)))


@pytest.fixture
def emulated_backend(emulated, monkeypatch):
    """backend="cuda" on CPU tensors runs the emulated kernels: the whole Python path of the
    cuda backend (op layer, launch plans, argument packing) with the CPU emulation below."""
    real_resolve = backends.resolve

    def resolve(backend, device):
        return "cuda" if backend == "cuda" else real_resolve(backend, device)

    monkeypatch.setattr(cuda, "unavailable_reason", lambda: None)
    monkeypatch.setattr(cuda, "_kernels", lambda: emulated)
    monkeypatch.setattr(backends, "resolve", resolve)
    return "cuda"


# Coarse grids small enough for small volumes: the emulation runs one std::thread per CUDA
# thread, so 3D cases stay near 10^3 voxels.
SMALL_GRIDS = rk.SynthesisConfig(field_nodes=(4, 3), warp_nodes=(5, 3), bias_fwhm_min=4.0,
                                 bias_fwhm_max=8.0)


@pytest.mark.parametrize("shape,K,config,views", [
    ((9, 11, 10), 6, SMALL_GRIDS.replace(texture_std_max=0.2), 2),
    ((37, 29), 11, rk.SynthesisConfig(), 1),
    ((21, 19), 5, rk.SynthesisConfig(shapes="blobs", blur_sigma_max=3.0), 2),
    ((10, 9, 11), 5, SMALL_GRIDS.replace(thick_slice_prob=0.7, lowres_prob=0.7,
                                         clear_background_prob=0.5, border="zeros",
                                         warp_std_max=3.0), 2),
    ((33, 30), 7, rk.SynthesisConfig(thick_slice_prob=1.0, thick_slice_axes=(0, 1),
                                     lowres_prob=1.0, lowres_voxel_max=6.0,
                                     clear_background_prob=1.0), 1),
])
def test_whole_synthesis_on_the_emulated_kernels_matches_the_cpu_backend(
        emulated_backend, shape, K, config, views):
    got = rk.synthesize(2, shape, K, seed=21, start_index=9, config=config, views=views,
                        backend=emulated_backend)
    cpu_image, cpu_label = rk.synthesize(2, shape, K, seed=21, start_index=9, config=config,
                                         views=views, backend="cpu")
    ws = params.make_workspace(2, shape, K, views, config, "cpu")
    torch.arange(9, 11, out=ws.sample_index)
    params.draw_anatomy(ws, shape, config, 21, "reference")
    assert_labels_match(got[1], ws.fields, ws.warps, config.field_nodes, config.warp_nodes,
                        config.shapes, config.border)
    differ = got[1] != cpu_label
    assert float(differ.float().mean()) <= MAX_TIE_FRACTION
    if not differ.any():
        assert float((got[0] - cpu_image).abs().max()) <= IMAGE_ATOL
    assert float(got[0].min()) >= 0.0 and float(got[0].max()) <= 1.0


# ---- on a GPU --------------------------------------------------------------------------------

def _gpu_kernels() -> cuda.Kernels:
    return cuda._default_kernels()


@needs_gpu
@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_gpu_philox_fill_matches_cpu_and_reference(distribution):
    from rasd_kernels.ops import philox_fill
    index = torch.tensor([0, 7, (1 << 40) + 1])
    out = philox_fill(torch.empty(3, 4, 1001, device="cuda"), index.cuda(), 99, 5, distribution,
                      backend="cuda").cpu()
    cpu = philox_fill(torch.empty(3, 4, 1001), index, 99, 5, distribution, backend="cpu")
    expected = philox.fill((3, 4, 1001), index, 99, 5, distribution)
    if distribution == "uniform":  # the Philox words themselves: bit for bit
        assert torch.equal(out, cpu) and torch.equal(out.double(), expected)
    else:
        assert float((out - cpu).abs().max()) < NORMAL_ATOL * 4
        assert float((out.double() - expected).abs().max()) < NORMAL_ATOL * 4


@needs_gpu
@pytest.mark.parametrize("case", range(len(GMM_CASES)))
def test_gpu_gmm_shapes_matches_reference_and_cpu(case):
    from rasd_kernels.ops import gmm_shapes
    shape, K, fn, wn, mode = GMM_CASES[case]
    fields, warps = perlin_inputs(shape, K, fn, wn, case) if mode == "perlin" \
        else blob_inputs(shape, K, wn, case)
    labels = torch.full((2, *shape), 255, dtype=torch.uint8, device="cuda")
    gmm_shapes(labels, fields.cuda(), warps.cuda(), fn, wn, mode, backend="cuda")
    assert_labels_match(labels, fields, warps, fn, wn, mode)
    cpu = gmm_shapes(torch.empty(2, *shape, dtype=torch.uint8), fields, warps, fn, wn, mode,
                     backend="cpu")
    # The two backends run the same operations; only fused multiply-adds may move a tie.
    assert float((labels.cpu() != cpu).float().mean()) <= MAX_TIE_FRACTION


@needs_gpu
@pytest.mark.parametrize("case", range(len(APPEARANCE_CASES)))
def test_gpu_appearance_and_bias_match_reference_and_cpu(case):
    from rasd_kernels.backends import cpu as cpu_backend
    shape, K, texture, sigma = APPEARANCE_CASES[case]
    if sigma is not None and max(sigma) > 4:
        pytest.skip("the CPU backend rejects sigma > 4")
    inputs = appearance_inputs(shape, K, texture, case, sigma)
    image, out = run_appearance(_gpu_kernels(), "cuda", *inputs)
    assert_appearance_close(image, out, *reference_appearance(*inputs))
    cpu_image, cpu_out = run_appearance(cpu_backend, "cpu", *inputs)
    assert_appearance_close(image, out, cpu_image, cpu_out)
    _, _, coef, s, _ = inputs
    x = 0.5 + torch.rand(2, 2, *shape, generator=generator(3))
    got = x.cuda()
    _gpu_kernels().bias_field(got, coef.cuda(), s.cuda())
    expected = x.double()
    ref_bias.bias_field(expected, coef, s)
    assert float(((got.cpu().double() - expected) / expected).abs().max()) < BIAS_RTOL


@needs_gpu
def test_gpu_compiled_module_and_cupy_paths_agree():
    try:
        from rasd_kernels import _cuda
        nvrtc_path = cuda.CupyLauncher()
    except ImportError as exc:
        pytest.skip(f"needs both rasd_kernels._cuda and CuPy ({exc})")
    compiled, runtime = cuda.Kernels(_cuda), cuda.Kernels(nvrtc_path)
    inputs = appearance_inputs((16, 13, 19), 8, True, 1)
    assert all(torch.equal(a, b) for a, b in zip(run_appearance(compiled, "cuda", *inputs),
                                                 run_appearance(runtime, "cuda", *inputs)))
    fields, warps = perlin_inputs((17, 19, 16), 8, [8, 4], [16, 8, 4], 0)
    la, lb = (torch.empty(2, 17, 19, 16, dtype=torch.uint8, device="cuda") for _ in range(2))
    compiled.gmm_shapes(la, fields.cuda(), warps.cuda(), [8, 4], [16, 8, 4], "perlin")
    runtime.gmm_shapes(lb, fields.cuda(), warps.cuda(), [8, 4], [16, 8, 4], "perlin")
    assert torch.equal(la, lb)


@needs_gpu
def test_gpu_synthesize_into_is_captured_in_a_cuda_graph_and_replays_new_indices():
    import rasd_kernels
    shape, K = (32, 36, 40), 6
    image = torch.empty(2, 1, *shape, device="cuda")
    label = torch.empty(2, *shape, dtype=torch.uint8, device="cuda")
    start = torch.zeros((), dtype=torch.int64, device="cuda")

    def step():
        rasd_kernels.synthesize_into(image, label, num_labels=K, seed=3, start_index=start,
                                     backend="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture: workspaces, kernel loading
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    for index in (5, 17):
        start.fill_(index)
        graph.replay()
        torch.cuda.synchronize()
        eager_image, eager_label = rasd_kernels.synthesize(2, shape, K, seed=3,
                                                           start_index=index, device="cuda",
                                                           backend="cuda")
        assert torch.equal(label, eager_label) and torch.equal(image, eager_image)
