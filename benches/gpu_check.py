"""The one prepared GPU check: install, verify every GPU backend, time the presets.

    python benches/gpu_check.py              # on a GPU machine (no network): < 8 minutes
    python benches/gpu_check.py --smoke      # anywhere: tiny checks only, no timing
    python benches/gpu_check.py --no-install --backends triton --budget-s 300

1. Installs the package (`pip install --no-build-isolation --no-deps -e .`, then `pip install
   --no-build-isolation --no-deps .`; if both fail it runs from the source tree, where the pure
   Python package and the Triton kernels work but compiled backends may be missing).
2. For every GPU backend that can run (triton; cuda when
   rasd_kernels.backends.unavailable_reason("cuda") is None), against the float64 reference
   at small odd sizes, 2D and 3D: Philox uniforms bit for bit and normals to 1e-5; gmm_shapes
   labels equal except at float ties; bias_field and appearance within the test tolerances;
   whole synthesize batches; on CUDA, synthesize_into captured in a CUDA graph and replayed
   with new start indices equals the eager samples. A backend that fails is not timed.
3. On CUDA: times rasd3d (128^3, K=8) and rasd2d (512^2, K=16) per backend with CUDA events
   (median of many CUDA-graph replays, eager launches if capture fails): the full synthesis and
   the labels stage alone (gmm_shapes), in samples/s and as a fraction of the card's measured
   device-to-device copy bandwidth (bytes written / time over the copy's bytes written / time);
   and the literal published generator (rasd_bench.literal) on the same card if it exists.
4. On CUDA, with the time left: the device-only tests of tests/test_triton_backend.py
   (CUDA-graph capture and replay, Philox test kernels) under pytest.
5. Prints a final summary block (and one JSON line); exit status 1 if any check failed.
Without CUDA (or with --smoke) the checks run at tiny sizes (Triton under TRITON_INTERPRET=1)
and the timing is skipped, saying so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Wall-clock start, kept across the re-exec that follows the install.
START = float(os.environ.setdefault("RASD_GPU_CHECK_START", repr(time.time())))
DEADLINE_S = 450.0      # nothing new starts after this: the run ends within 8 minutes


def elapsed() -> float:
    return time.time() - START


def log(message: str) -> None:
    print(f"[{elapsed():6.1f}s] {message}", flush=True)


# ---- 1. install ----------------------------------------------------------------------------

def install(timeout_s: float) -> str:
    """Install the package without network; returns how it is importable."""
    attempts = [["-e", "."], ["."]]
    for extra in attempts:
        cmd = [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
               "--no-input", "-q", *extra]
        log("install: " + " ".join(cmd[2:]))
        try:
            result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                    timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log(f"install: timed out after {timeout_s:.0f}s; running from the source tree")
            break   # the other form would build the same extension: no time for it
        if result.returncode == 0:
            return "pip install " + " ".join(extra)
        log("install failed:\n" + (result.stdout + result.stderr)[-2000:])
    sys.path[:0] = [str(ROOT), str(ROOT / "python")]
    return "source tree on sys.path (pip install failed)"


# ---- 2. checks -----------------------------------------------------------------------------

class Checks:
    """Collects named pass / fail results with the measured numbers."""

    def __init__(self):
        self.results: list[tuple[str, str, bool, str]] = []

    def record(self, backend: str, name: str, ok: bool, detail: str) -> None:
        self.results.append((backend, name, bool(ok), detail))
        log(f"{'PASS' if ok else 'FAIL'} {backend:7s} {name}: {detail}")

    def run(self, backend: str, name: str, fn) -> None:
        try:
            ok, detail = fn()
        except Exception as exc:  # a crash is a failed check, the others still run
            ok, detail = False, f"{type(exc).__name__}: {str(exc)[:300]}"
        self.record(backend, name, ok, detail)

    def passed(self, backend: str) -> bool:
        return all(ok for b, _, ok, _ in self.results if b == backend)


def check_philox(torch, rk, backend, device):
    from rasd_kernels.reference import philox

    worst = 0.0
    for shape in [(3, 1001), (2, 4097), (1, 7)]:
        index = torch.tensor([5, (1 << 35) + 3, 77][: shape[0]])
        for dist in ("uniform", "normal"):
            out = torch.full(shape, float("nan"), device=device)
            rk.ops.philox_fill(out, index.to(device), (1 << 40) + 9, 6, dist, backend=backend)
            expected = philox.fill(shape, index, (1 << 40) + 9, 6, dist)
            got = out.cpu().double()
            if dist == "uniform" and not torch.equal(got, expected):
                return False, f"uniform {shape} not bit-identical"
            worst = max(worst, float((got - expected).abs().max()))
    return worst <= 1e-5 * 6, f"uniforms bit-identical; normals max |err| {worst:.2e}"


def anatomy_inputs(torch, rk, shape, K, config, batch=2):
    """Fields and warps drawn by the reference (realistic ranges), on the CPU."""
    from rasd_kernels import params

    ws = params.make_workspace(batch, shape, K, 1, config, "cpu")
    torch.arange(batch, out=ws.sample_index)
    params.draw_anatomy(ws, shape, config, 21, "reference")
    params.draw_appearance(ws, shape, config, 21, "reference")
    return ws


def check_gmm(torch, rk, backend, device, cases):
    from rasd_kernels.reference.gmm_shapes import scores

    report = []
    for shape, K, config in cases:
        ws = anatomy_inputs(torch, rk, shape, K, config)
        labels = torch.full((2, *shape), 255, dtype=torch.uint8, device=device)
        rk.ops.gmm_shapes(labels, ws.fields.to(device), ws.warps.to(device), config.field_nodes,
                          config.warp_nodes, config.shapes, backend=backend)
        s = scores(ws.fields, ws.warps, config.field_nodes, config.warp_nodes, shape,
                   config.shapes)
        expected = s.argmax(1)
        got = labels.cpu().long()
        differ = got != expected
        margin = 0.0
        if differ.any():
            best = s.gather(1, expected.unsqueeze(1)).squeeze(1)
            chosen = s.gather(1, got.clamp(max=K - 1).unsqueeze(1)).squeeze(1)
            margin = float((best - chosen)[differ].max())
        if float(differ.float().mean()) > 1e-3 or margin >= 1e-4:
            return False, f"{shape} {config.shapes}: {int(differ.sum())} differ, margin {margin}"
        report.append(f"{shape}:{int(differ.sum())}")
    return True, "label mismatches (all ties < 1e-4) " + " ".join(report)


def check_bias(torch, rk, backend, device, cases):
    from rasd_kernels.reference.bias_field import bias_field as ref_bias

    worst = 0.0
    for shape, K, config in cases:
        ws = anatomy_inputs(torch, rk, shape, K, config)
        image = 0.1 + torch.rand(2, 1, *shape, generator=torch.Generator().manual_seed(3))
        expected = image.clone()
        ref_bias(expected, ws.bias_coef, ws.scalars)
        got = image.to(device)
        rk.ops.bias_field(got, ws.bias_coef.to(device), ws.scalars.to(device), backend=backend)
        rel = ((got.cpu() - expected).abs() / (1e-6 + 1e-5 * expected.abs())).max()
        worst = max(worst, float(rel))
    return worst <= 1.0, f"max error / (1e-6 + 1e-5 |x|) = {worst:.3f}"


def check_appearance(torch, rk, backend, device, cases):
    from rasd_kernels.reference.appearance import appearance as ref_appearance

    worst_img, worst_stats = 0.0, 0.0
    for shape, K, config in cases:
        ws = anatomy_inputs(torch, rk, shape, K, config.replace(texture_std_max=0.1))
        labels = torch.randint(0, K, (2, *shape), dtype=torch.uint8,
                               generator=torch.Generator().manual_seed(4))
        outs = []
        for name, dev in ((backend, device), ("reference", torch.device("cpu"))):
            image = torch.full((2, 1, *shape), float("nan"), device=dev)
            stats = torch.full((2, 1, 4), float("nan"), device=dev)
            fn = rk.ops.appearance if name != "reference" else None
            args = (image, labels.to(dev), ws.label_stats.to(dev), ws.bias_coef.to(dev),
                    ws.scalars.to(dev), stats, ws.sample_index.to(dev), 13)
            if fn is None:
                ref_appearance(*args)
            else:
                fn(*args, backend=name)
            outs.append((image.cpu(), stats.cpu()))
        (img, st), (ref_img, ref_st) = outs
        worst_img = max(worst_img, float((img - ref_img).abs().max()))
        worst_stats = max(worst_stats, float(((st - ref_st).abs()
                                              / (1e-6 + 1e-5 * ref_st.abs())).max()))
    ok = worst_img <= 2e-4 and worst_stats <= 1.0
    return ok, f"image max |err| {worst_img:.2e} (<= 2e-4), stats err ratio {worst_stats:.2f}"


def check_synthesize(torch, rk, backend, device, cases):
    import torch.nn.functional as F

    report = []
    for shape, K, config in cases:
        got = rk.synthesize(2, shape, K, seed=11, start_index=3, device=device, config=config,
                            views=2, backend=backend)
        ref = rk.synthesize(2, shape, K, seed=11, start_index=3, device="cpu", config=config,
                            views=2, backend="reference")
        differ = got[1].cpu() != ref[1]
        fraction = float(differ.float().mean())
        pool = F.max_pool3d if len(shape) == 3 else F.max_pool2d
        near = pool(differ.float().unsqueeze(1), 7, 1, 3).squeeze(1) > 0
        keep = ~near.unsqueeze(1).expand_as(ref[0])
        err = float((got[0].cpu()[keep] - ref[0][keep]).abs().max()) if keep.any() else 0.0
        atol = 5e-4 * (20 if differ.any() else 1)
        if fraction > 1e-3 or err > atol:
            return False, f"{shape}: label mismatch {fraction:.1e}, image err {err:.1e}"
        report.append(f"{shape}:{fraction:.0e}/{err:.0e}")
    return True, "label mismatch / image err " + " ".join(report)


def check_graph_replay(torch, rk, backend, device, cases):
    """synthesize_into captured in a CUDA graph, replayed with new start indices written into
    its device tensor, gives the eager samples of those indices bit for bit."""
    shape, K, config = cases[0]
    image = torch.empty(2, 2 * config.channels, *shape, device=device)
    label = torch.empty(2, *shape, dtype=torch.uint8, device=device)
    start = torch.zeros((), dtype=torch.int64, device=device)

    def fill():
        rk.synthesize_into(image, label, num_labels=K, seed=5, start_index=start,
                           config=config, backend=backend)

    replay, how = graphed(torch, fill)
    if how != "graph":
        return False, "synthesize_into could not be captured in a CUDA graph"
    for first in (7, (1 << 40) + 3):
        start.fill_(first)
        replay()
        torch.cuda.synchronize()
        ref_image, ref_label = rk.synthesize(2, shape, K, seed=5, start_index=first,
                                             device=device, config=config, views=2,
                                             backend=backend)
        if not (torch.equal(label, ref_label) and torch.equal(image, ref_image)):
            return False, f"replay at start {first} differs from the eager samples"
    return True, "2 replays at new start indices equal eager, bit for bit"


def run_pytest(checks: Checks, timeout_s: float) -> None:
    """The device-only tests (CUDA-graph capture and replay, Philox test kernels), on the GPU."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
           "tests/test_triton_backend.py", "-k", "cuda_graph or rounds or per_element"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "python"),
                                         env.get("PYTHONPATH", "")])
    try:
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
                                env=env)
        tail = (result.stdout + result.stderr).strip().splitlines()
        checks.record("pytest", "test_triton_backend (device)", result.returncode == 0,
                      tail[-1] if tail else f"exit {result.returncode}")
        if result.returncode != 0:
            print("\n".join(tail[-40:]))
    except subprocess.TimeoutExpired:
        checks.record("pytest", "test_triton_backend (device)", False,
                      f"timed out after {timeout_s:.0f}s")


def run_checks(torch, rk, backends_to_check, smoke: bool) -> Checks:
    config = rk.SynthesisConfig()
    small = config.replace(field_nodes=(4, 3), warp_nodes=(5, 3), bias_fwhm_min=4.0,
                           bias_fwhm_max=8.0)
    if smoke:
        cases = [((7, 9, 11), 3, small), ((24, 21), 5, small.replace(shapes="blobs"))]
    else:
        cases = [((17, 16, 18), 8, config), ((9, 10, 11), 4, small),
                 ((33, 37), 16, config), ((31, 26), 7, config.replace(shapes="blobs")),
                 ((20, 21, 19), 5, config.replace(shapes="blobs"))]
    checks = Checks()
    for backend, device in backends_to_check:
        checks.run(backend, "philox_fill", lambda: check_philox(torch, rk, backend, device))
        checks.run(backend, "gmm_shapes", lambda: check_gmm(torch, rk, backend, device, cases))
        checks.run(backend, "bias_field", lambda: check_bias(torch, rk, backend, device, cases))
        checks.run(backend, "appearance",
                   lambda: check_appearance(torch, rk, backend, device, cases))
        checks.run(backend, "synthesize",
                   lambda: check_synthesize(torch, rk, backend, device, cases[:3]))
        if device.type == "cuda":
            checks.run(backend, "graph replay",
                       lambda: check_graph_replay(torch, rk, backend, device, cases))
    return checks


# ---- 3. timing -----------------------------------------------------------------------------

def copy_bandwidth(torch, nbytes=1 << 30, repeats=20) -> float:
    """Bytes written per second by a device-to-device tensor copy (median)."""
    src = torch.ones(nbytes // 4, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = time_events(torch, lambda: dst.copy_(src), repeats)
    del src, dst
    return nbytes / median(times)


def median(values):
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def time_events(torch, fn, repeats: int) -> list[float]:
    """Seconds of each call, bracketed by CUDA events."""
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(repeats)]
    torch.cuda.synchronize()
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) / 1e3 for s, e in events]


def graphed(torch, fn):
    """(replay, how): a CUDA graph of fn if it captures, else fn itself."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return graph.replay, "graph"
    except Exception as exc:  # eager launches still give a (slower) number
        log(f"CUDA graph capture failed ({type(exc).__name__}: {exc}); timing eager launches")
        torch.cuda.synchronize()
        return fn, "eager"


def time_preset(torch, rk, backend, preset, batch, repeats, copy_bw):
    from rasd_kernels import params

    shape, K, config = rk.preset(preset)
    voxels = math.prod(shape)
    image = torch.empty(batch, config.channels, *shape, device="cuda")
    label = torch.empty(batch, *shape, dtype=torch.uint8, device="cuda")
    start = torch.tensor(0, device="cuda")

    def full():
        rk.synthesize_into(image, label, num_labels=K, seed=1, start_index=start, config=config,
                           backend=backend)
        start.add_(batch)        # every replay draws fresh samples

    rows = []
    replay, how = graphed(torch, full)
    seconds = median(time_events(torch, replay, repeats))
    written = batch * voxels * (4 * config.channels + 1)
    rows.append(dict(preset=preset, backend=backend, stage="full", batch=batch, how=how,
                     ms=1e3 * seconds, samples_per_s=batch / seconds,
                     copy_fraction=written / seconds / copy_bw))
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0 and int(label.max()) < K

    ws = params.make_workspace(batch, shape, K, config.channels, config, "cuda")
    torch.arange(batch, out=ws.sample_index)
    params.draw_anatomy(ws, shape, config, 1, backend)

    def labels_only():
        rk.ops.gmm_shapes(label, ws.fields, ws.warps, config.field_nodes, config.warp_nodes,
                          config.shapes, backend=backend)

    replay, how = graphed(torch, labels_only)
    seconds = median(time_events(torch, replay, repeats))
    rows.append(dict(preset=preset, backend=backend, stage="labels", batch=batch, how=how,
                     ms=1e3 * seconds, samples_per_s=batch / seconds,
                     copy_fraction=batch * voxels / seconds / copy_bw))
    del image, label, ws
    torch.cuda.empty_cache()
    return rows


def time_literal(torch, rk, preset, budget_s):
    try:
        from rasd_bench import literal
    except ImportError as exc:
        log(f"literal generator not importable ({exc}); skipped")
        return []
    generate = getattr(literal, "generate", None)
    if generate is None:
        log("rasd_bench.literal has no generate(); skipped")
        return []
    shape, K, config = rk.preset(preset)
    batch = 1                # the published loop makes one sample at a time
    call = lambda: generate(batch, shape, K, seed=1, config=config, device="cuda")  # noqa: E731
    first = time_events(torch, call, 1)[0]
    repeats = max(1, min(5, int(budget_s / max(first, 1e-3))))
    seconds = median(time_events(torch, call, repeats))
    return [dict(preset=preset, backend="literal", stage="full", batch=batch, how="eager",
                 ms=1e3 * seconds, samples_per_s=batch / seconds, copy_fraction=None)]


# ---- 4. summary ----------------------------------------------------------------------------

def summary(env: dict, checks: Checks, rows: list[dict], notes: list[str]) -> bool:
    ok = all(r[2] for r in checks.results) and bool(checks.results)
    print("\n==================== gpu_check summary ====================")
    for key, value in env.items():
        print(f"{key:16s} {value}")
    for backend in dict.fromkeys(r[0] for r in checks.results):
        names = [f"{n}:{'ok' if o else 'FAIL'}" for b, n, o, _ in checks.results if b == backend]
        print(f"checks {backend:9s} {' '.join(names)}")
    if rows:
        print(f"{'preset':8s} {'backend':8s} {'stage':7s} {'batch':>5s} {'how':6s} "
              f"{'ms/batch':>9s} {'samples/s':>11s} {'of copy bw':>10s}")
        for r in rows:
            frac = "-" if r["copy_fraction"] is None else f"{100 * r['copy_fraction']:.1f}%"
            print(f"{r['preset']:8s} {r['backend']:8s} {r['stage']:7s} {r['batch']:5d} "
                  f"{r['how']:6s} {r['ms']:9.3f} {r['samples_per_s']:11.1f} {frac:>10s}")
    for note in notes:
        print(f"note: {note}")
    print(f"total time       {elapsed():.0f}s")
    print(f"RESULT           {'PASS' if ok else 'FAIL'}")
    print(json.dumps(dict(env=env, ok=ok, checks=[list(r) for r in checks.results],
                          timings=rows, notes=notes)))
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny checks, no timing")
    parser.add_argument("--no-install", action="store_true", help="skip the pip install")
    parser.add_argument("--backends", nargs="+", default=["triton", "cuda"])
    parser.add_argument("--budget-s", type=float, default=330.0,
                        help="start no backend timing after this many seconds (the literal "
                             "generator gets 70 s more; the whole run stays under 8 minutes)")
    parser.add_argument("--install-timeout-s", type=float, default=180.0)
    parser.add_argument("--installed-as", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    notes = []
    if not cuda:
        os.environ.setdefault("TRITON_INTERPRET", "1")   # before triton is imported
        notes.append("no CUDA device: Triton checked under TRITON_INTERPRET=1 at tiny sizes; "
                     "timing skipped")
    smoke = args.smoke or not cuda
    if args.installed_as:
        how_installed = args.installed_as
    elif args.no_install:
        how_installed = "not installed (--no-install)"
    elif not cuda:
        how_installed = "not installed (no CUDA: smoke test from the working tree)"
    else:
        how_installed = install(args.install_timeout_s)
        if how_installed.startswith("pip"):
            # A fresh interpreter sees the installed package (editable finders load at start).
            argv = sys.argv[1:] if argv is None else list(argv)
            os.execv(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv,
                                      "--installed-as", how_installed])
    try:
        import rasd_kernels as rk
    except ImportError:
        sys.path[:0] = [str(ROOT), str(ROOT / "python")]
        import rasd_kernels as rk
    from rasd_kernels import backends

    env = {"device": torch.cuda.get_device_name() if cuda else "cpu (no CUDA)",
           "torch": torch.__version__, "install": how_installed,
           "rasd_kernels": os.path.dirname(rk.__file__)}
    try:
        import triton
        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = "not installed"
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                       capture_output=True, text=True).stdout.strip() or "?"
    except OSError:
        env["commit"] = "?"

    to_check = []
    for backend in args.backends:
        reason = backends.unavailable_reason(backend)
        if reason is not None:
            notes.append(f"{backend} not checked: {reason}")
            continue
        device = torch.device("cuda" if cuda else "cpu")
        if backend == "cuda" and not cuda:
            continue
        to_check.append((backend, device))
    log(f"checking {[b for b, _ in to_check]} against the reference")
    checks = run_checks(torch, rk, to_check, smoke)

    rows = []
    if cuda and not smoke:
        copy_bw = copy_bandwidth(torch)
        env["copy_bw"] = f"{copy_bw / 1e9:.0f} GB/s written (device-to-device copy, median)"
        plan = [("rasd3d", 32, 30), ("rasd2d", 256, 30)]
        for backend, _ in to_check:
            if not checks.passed(backend):
                notes.append(f"{backend} not timed: a correctness check failed")
                continue
            for preset, batch, repeats in plan:
                if elapsed() > args.budget_s:
                    notes.append(f"{backend} {preset} not timed: time budget spent")
                    continue
                try:
                    rows += time_preset(torch, rk, backend, preset, batch, repeats, copy_bw)
                    log(f"timed {backend} {preset}: {rows[-2]['samples_per_s']:.0f} samples/s")
                except Exception as exc:
                    notes.append(f"{backend} {preset} timing failed: {type(exc).__name__}: "
                                 f"{str(exc)[:200]}")
        for preset, _, _ in plan:
            left = args.budget_s + 70 - elapsed()
            if left < 20:
                notes.append(f"literal {preset} not timed: time budget spent")
                continue
            try:
                rows += time_literal(torch, rk, preset, min(20.0, left / 2))
            except Exception as exc:
                notes.append(f"literal {preset} failed: {type(exc).__name__}: {str(exc)[:200]}")
        left = DEADLINE_S - elapsed()
        if left >= 30:
            run_pytest(checks, timeout_s=min(120.0, left))
        else:
            notes.append("device pytest not run: time budget spent")
    elif cuda:
        notes.append("--smoke: timing skipped")
    return 0 if summary(env, checks, rows, notes) else 1


if __name__ == "__main__":
    sys.exit(main())
