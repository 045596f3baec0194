"""Bad input, low memory and kills: a clear error or a correct result, never a crash, a hang,
a silent clamp or a wrong answer."""

import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest
import torch

import rasd_kernels as rk
from rasd_kernels import backends, memory

if backends.unavailable_reason("cpu") is not None:  # the build is part of the product
    raise RuntimeError(backends.unavailable_reason("cpu"))

from rasd_kernels import _C  # noqa: E402


def _python(code: str, limit_kb: int | None = None, timeout: int = 600):
    """Run code in a fresh interpreter, under `ulimit -v limit_kb` if given."""
    cmd = [sys.executable, "-c", textwrap.dedent(code)]
    if limit_kb is not None:
        cmd = ["bash", "-c", f'ulimit -v {limit_kb} && exec "$@"', "bash", *cmd]
    # From a neutral folder: the repository root's source tree, without the compiled module,
    # would shadow the installed package.
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          cwd=tempfile.gettempdir())


# ---- memory -------------------------------------------------------------------------------

def test_small_bias_fwhm_at_256_cubed_runs_under_8_gb():
    """It aborted with std::bad_alloc inside an OpenMP region (6 GB of spline scratch per
    thread); the spline maximum now needs a few planes."""
    done = _python("""
        import rasd_kernels as rk
        config = rk.SynthesisConfig(bias_fwhm_min=1.0, bias_fwhm_max=1.0)
        image, label = rk.synthesize(1, (256, 256, 256), 8, seed=0, config=config)
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0 and int(label.max()) < 8
        print("ok")
    """, limit_kb=8_000_000)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_a_call_that_does_not_fit_is_refused_up_front():
    done = _python("""
        import rasd_kernels as rk
        config = rk.SynthesisConfig(bias_fwhm_min=1.0, bias_fwhm_max=1.0)
        try:
            rk.synthesize(2, (512, 512, 512), 8, seed=0, config=config)
        except MemoryError as exc:
            print("refused:", exc)
    """, limit_kb=3_000_000)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("refused: batch 2 of shape (512, 512, 512)")
    assert "GiB" in done.stdout and "free" in done.stdout


@pytest.mark.parametrize("shape,config", [
    ((96, 96, 96), rk.SynthesisConfig(bias_fwhm_min=1.0, bias_fwhm_max=2.0)),
    ((64, 80, 72), rk.SynthesisConfig(texture_std_max=0.3, blur_sigma_max=4.0)),
    ((640, 600), rk.SynthesisConfig(bias_fwhm_min=1.0, bias_fwhm_max=1.5)),
])
def test_the_memory_estimate_bounds_what_a_call_uses(shape, config):
    """Peak resident memory of a call (in a fresh process) stays below the estimate that the
    up-front check uses."""
    done = _python(f"""
        import resource, torch
        import rasd_kernels as rk
        from rasd_kernels import memory
        config = rk.{config!r}
        rk.synthesize(1, (24, 24), 3, seed=0)              # load everything first
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        rk.synthesize(2, {shape}, 8, seed=1, config=config, views=2)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        threads = rk.backends.cpu_threads()
        print(after - before, memory.call_bytes(2, {shape}, 8, 2, config, "cpu", threads))
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    used, estimate = map(int, done.stdout.split())
    assert used <= estimate, f"a call used {used} bytes, the estimate is {estimate}"


def test_memory_sources_are_read():
    assert memory.available_bytes(torch.device("cpu")) > 0
    assert memory.workspace_bytes(2, (32, 32), 4, 1, rk.SynthesisConfig()) > 0


def test_a_bias_lattice_too_wide_for_the_cpu_rows_is_named():
    config = rk.SynthesisConfig(bias_fwhm_min=1.0, bias_fwhm_max=1.0)
    with pytest.raises(ValueError, match="bias_fwhm_min .* too small for a width of 3000"):
        rk.synthesize(1, (16, 3000), 4, seed=0, config=config, backend="cpu")


# ---- the parallel loop --------------------------------------------------------------------

def test_an_exception_in_a_parallel_loop_reaches_python():
    assert _C.parallel_for_probe(1000, -1, 16) == 999 * 1000 // 2
    with pytest.raises(RuntimeError, match="unit 517 failed"):
        _C.parallel_for_probe(1000, 517, 16)
    assert _C.parallel_for_probe(10, -1, 0) == 45          # and the loop still works


def test_scratch_that_cannot_be_allocated_is_a_memory_error():
    with pytest.raises(MemoryError):
        _C.parallel_for_probe(4, -1, 1 << 50)


def test_the_loop_in_a_forked_child_reports_errors_too():
    done = _python("""
        import os
        from rasd_kernels import _C
        from rasd_kernels.backends import cpu
        cpu.set_num_threads(2)
        _C.parallel_for_probe(100, -1, 8)
        if os.fork() == 0:
            try:
                _C.parallel_for_probe(100, 42, 8)
            except RuntimeError as exc:
                os._exit(0 if "unit 42" in str(exc) and _C.parallel_for_probe(100, -1, 8) == 4950
                         and cpu.last_team_size() == 2 else 1)
            os._exit(2)
        print(os.WEXITSTATUS(os.wait()[1]))
    """)
    assert done.stdout.strip() == "0", done.stderr[-2000:]


# ---- silent wrong answers -----------------------------------------------------------------

def test_images_stay_within_one_under_a_strong_bias():
    config = rk.SynthesisConfig(bias_std_min=3.0, bias_std_max=3.0)
    image, _ = rk.synthesize(40, (64, 64), 8, seed=0, config=config, backend="cpu")
    assert float(image.max()) <= 1.0 and float(image.min()) >= 0.0


def _outputs(**kw):
    image = torch.empty(2, 1, 20, 20, **kw)
    label = torch.empty(2, 20, 20, dtype=torch.uint8)
    return image, label


@pytest.mark.parametrize("make,match", [
    (lambda: _outputs(requires_grad=True), "image requires grad"),
    (lambda: (torch.empty(2, 1, 20, 20, requires_grad=True) * 1, _outputs()[1]),
     "image requires grad"),
    (lambda: (torch.empty(2, 0, 20, 20), _outputs()[1]), "image is empty"),
])
def test_outputs_with_autograd_or_no_channels_are_refused(make, match):
    image, label = make()
    with pytest.raises(ValueError, match=match):
        rk.synthesize_into(image, label, num_labels=4, seed=0)


def test_overlapping_outputs_are_refused():
    buffer = torch.empty(2 * 20 * 20 * 5, dtype=torch.uint8)
    image = buffer[: 2 * 400 * 4].view(torch.float32).view(2, 1, 20, 20)
    label = buffer[2 * 400 * 2: 2 * 400 * 3].view(2, 20, 20)
    with pytest.raises(ValueError, match="image and label overlap in memory"):
        rk.synthesize_into(image, label, num_labels=8, seed=0)


@pytest.mark.parametrize("start,match", [
    (torch.tensor(-5), r"start_index must be in \[0, "),
    (torch.tensor(2 ** 63 - 1), r"start_index must be in \[0, "),
    (2 ** 63 - 2, r"start_index must be in \[0, "),
    (-1, r"start_index must be in \[0, "),
])
def test_start_indices_out_of_range_are_refused(start, match):
    with pytest.raises(ValueError, match=match):
        rk.synthesize(2, (20, 20), 4, seed=0, start_index=start)


def test_the_last_start_index_is_accepted():
    last = 2 ** 63 - 3            # rows 2^63 - 3 and 2^63 - 2: the end fits in int64
    a = rk.synthesize(2, (20, 20), 4, seed=0, start_index=last)
    b = rk.synthesize(2, (20, 20), 4, seed=0, start_index=torch.tensor(last))
    assert torch.equal(a[0], b[0])


@pytest.mark.parametrize("changes,match", [
    (dict(blob_weight_max=1e300), r"blob_weight_max must be <= 1e\+30"),
    (dict(channels=True), "channels must be an int >= 1"),
    (dict(noise_std_max=float("nan")), "noise_std_max must be a finite number"),
    (dict(gamma_min="1"), "gamma_min must be a finite number"),
    (dict(field_nodes=(4,) * 7), "field_nodes has 7 scales; at most 6"),
    (dict(warp_nodes=(2000,)), r"warp_nodes must be a non-empty tuple of ints in \[2, 1023\]"),
    (dict(warp_nodes=16), "warp_nodes must be a non-empty tuple"),
])
def test_bad_config_values_name_the_field(changes, match):
    with pytest.raises(ValueError, match=match):
        rk.SynthesisConfig(**changes)


def test_grid_limits_agree_with_the_compiled_module():
    from rasd_kernels import config
    assert (config.MAX_GRID_SCALES, config.MAX_GRID_NODES) == (_C.MAX_GRID_SCALES,
                                                               _C.MAX_GRID_NODES)
    assert memory.MAX_BIAS_NODES == _C.MAX_BIAS_NODES


def test_numpy_numbers_are_numbers():
    config = rk.SynthesisConfig(noise_std_max=np.float32(0.3), channels=np.int64(1),
                                warp_nodes=(np.int64(8), 4))
    assert type(config.noise_std_max) is float and config.warp_nodes == (8, 4)
    a = rk.synthesize(np.int64(2), (np.int32(20), 20), np.int64(4), seed=np.uint32(3),
                      start_index=np.int64(5), config=config)
    b = rk.synthesize(2, (20, 20), 4, seed=3, start_index=5, config=config)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_presets_cannot_be_changed_for_everyone():
    with pytest.raises(TypeError):
        rk.PRESETS["rasd3d"] = ((64, 64, 64), 4, rk.SynthesisConfig())
    assert rk.preset("rasd3d")[0] == (128, 128, 128)


# ---- unclear errors -----------------------------------------------------------------------

def test_an_int_shape_and_a_missing_cuda_are_named():
    with pytest.raises(TypeError, match="shape must be a tuple of 2 or 3 ints, got int 64"):
        rk.synthesize(1, 64, 4, seed=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' was asked for, but"):
            rk.synthesize(1, (20, 20), 4, seed=0, device="cuda")
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        rk.synthesize(1, (20, 20), 4, seed=0, device="meta")


def _sample(tmp_path, *args):
    from rasd_pretrain.sample import main
    return main(["--n", "1", "--shape", "24", "24", "--labels", "3", *args])


def test_rasd_sample_refuses_a_bad_backend_before_writing(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        _sample(tmp_path, "--out", str(out), "--backend", "gpu")
    assert exit_.value.code == 2 and "invalid choice: 'gpu'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_rasd_sample_refuses_a_missing_cuda_before_writing(tmp_path, capsys):
    out = tmp_path / "out"
    assert _sample(tmp_path, "--out", str(out), "--device", "cuda") == 2
    assert "device 'cuda' was asked for" in capsys.readouterr().err
    assert not out.exists()


def test_rasd_sample_checks_the_folder_before_synthesising(tmp_path, capsys, monkeypatch):
    def no_synthesis(*args, **kwargs):
        raise AssertionError("synthesised before checking the output folder")

    monkeypatch.setattr("rasd_kernels.synthesize", no_synthesis)
    # /proc/self is a folder in which nobody, root included, can create a file.
    assert _sample(tmp_path, "--out", "/proc/self") == 2
    assert "cannot write to the output folder /proc/self" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert _sample(tmp_path, "--out", str(blocker / "out")) == 2
    assert "cannot write to the output folder" in capsys.readouterr().err


def test_checkpoint_saves_remove_what_killed_saves_left(tmp_path):
    from rasd_pretrain.checkpoint import remove_stale_temporaries

    path = tmp_path / "last.pt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / f"last.pt.tmp{dead}").write_bytes(b"")
    (tmp_path / f"last.pt.tmp{os.getpid()}").write_bytes(b"")
    (tmp_path / f"last.pt.tmp{os.getppid()}").write_bytes(b"")   # a live process's save
    (tmp_path / "last.pt.tmpnotes").write_bytes(b"")
    removed = remove_stale_temporaries(str(path))
    assert sorted(os.path.basename(p) for p in removed) == sorted(
        [f"last.pt.tmp{dead}", f"last.pt.tmp{os.getpid()}"])
    assert sorted(os.listdir(tmp_path)) == sorted([f"last.pt.tmp{os.getppid()}",
                                                  "last.pt.tmpnotes"])
