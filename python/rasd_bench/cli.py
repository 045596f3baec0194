"""rasd-bench: throughput of RaSD synthesis, ours beside the literal generator, TorchIO and
MONAI, on one workload in one run.

    rasd-bench --preset rasd3d                     # 128^3, K = 8, batch 4
    rasd-bench --preset rasd3d rasd2d --json       # one JSON object per result line
    rasd-bench --shape 24 24 24 --labels 4 --batch 1 --repeats 2
    rasd-bench --preset rasd3d rasd2d --acquisition  # the cost of each acquisition option

Tools: `rasd-<backend>` for every requested backend of rasd_kernels, `literal` (the published
generator, rasd_bench.literal), `torchio` and `monai` (rasd_bench.alternatives). Stages:
`labels` (anatomy), `appearance` (image from labels), `full` (both), and per op
`philox_fill`, `gmm_shapes`, `bias_field` for ours, one per transform for the alternatives.

Every case is checked before it is timed (rasd_bench.timing.run_case); ours are also compared
with the float64 reference at a small size. Each result is reported as samples/s (median,
20th-80th percentiles) and as a fraction of the floor: the samples/s this machine could reach
if writing the output (4 bytes per image channel and voxel, 1 per label voxel) at the speed of
a large tensor copy were the only cost. Ratios compare the fastest of ours with each other
tool on the same preset and stage.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import sys
from dataclasses import dataclass

import torch

from rasd_kernels import backends, params, streams
from rasd_kernels import stages as synthesis
from rasd_kernels.config import PRESETS, SynthesisConfig
from rasd_kernels.ops.bias_field import bias_field
from rasd_kernels.ops.gmm_shapes import gmm_shapes
from rasd_kernels.ops.philox_fill import philox_fill
from rasd_kernels.synthesize import synthesize, synthesize_into

from . import acquisition, alternatives, timing
from .timing import Case, CorrectnessError

PRESET_BATCH = {"rasd3d": 4, "rasd2d": 16, "rasd3d-clinical": 4}   # the published batch sizes
OUR_STAGES = ("full", "labels", "appearance", "philox_fill", "gmm_shapes", "bias_field")
LITERAL_STAGES = ("full", "labels", "appearance")
STAGES = tuple(dict.fromkeys(OUR_STAGES + alternatives.STAGES))
TOOLS = ("rasd", "literal", "torchio", "monai")
LABEL_STAGES = ("labels", "gmm_shapes")

# Small-size comparison of a backend with the float64 reference: labels may differ only at
# float ties; the image may differ beyond float32 rounding only around such voxels (the blur
# spreads a flipped label over a few neighbours).
LABEL_MISMATCH_MAX = 1e-3
IMAGE_ATOL = 1e-3
IMAGE_OUTLIER_MAX = 1e-2
OP_RTOL, OP_ATOL = 1e-4, 1e-5


@dataclass(frozen=True)
class Workload:
    preset: str
    shape: tuple[int, ...]
    num_labels: int
    batch: int
    config: SynthesisConfig

    @property
    def voxels(self) -> int:
        return math.prod(self.shape)

    @property
    def apps(self) -> int:
        return self.config.channels

    def bytes_written(self, stage: str) -> int:
        """Output bytes per sample of a stage: float32 image channels and/or uint8 labels."""
        if stage in LABEL_STAGES:
            return self.voxels
        if stage == "full":
            return (4 * self.apps + 1) * self.voxels
        return 4 * self.apps * self.voxels

    def small_shape(self) -> tuple[int, ...]:
        """Distinct sizes just above the largest coarse grid, for the reference comparison."""
        need = max((*self.config.warp_nodes, *self.config.field_nodes))
        return tuple(min(n, need + a) for a, n in enumerate(self.shape))


# ---- correctness -------------------------------------------------------------------------

def check_labels(label: torch.Tensor, batch: int, shape, num_labels: int) -> str:
    if label.dtype != torch.uint8 or tuple(label.shape) != (batch, *shape):
        raise CorrectnessError(f"labels are {label.dtype} {tuple(label.shape)}, expected "
                               f"uint8 {(batch, *shape)}")
    top = int(label.max())
    if top >= num_labels:
        raise CorrectnessError(f"label {top} found, expected labels < {num_labels}")
    return f"labels uint8 < {num_labels}"


def check_image(image: torch.Tensor, batch: int, apps: int, shape) -> str:
    if image.dtype != torch.float32 or tuple(image.shape) != (batch, apps, *shape):
        raise CorrectnessError(f"image is {image.dtype} {tuple(image.shape)}, expected "
                               f"float32 {(batch, apps, *shape)}")
    if not bool(torch.isfinite(image).all()):
        raise CorrectnessError("image has non-finite values")
    lo, hi = float(image.min()), float(image.max())
    if lo < 0.0 or hi > 1.0:
        raise CorrectnessError(f"image spans [{lo}, {hi}], outside [0, 1]")
    return "image finite in [0, 1]"


def check_normals(x: torch.Tensor) -> str:
    """Finite, mean about 0 and standard deviation about 1 (loose: a few thousand draws)."""
    if not bool(torch.isfinite(x).all()):
        raise CorrectnessError("noise has non-finite values")
    mean, std = float(x.double().mean()), float(x.double().std())
    if abs(mean) > 0.05 or abs(std - 1.0) > 0.05:
        raise CorrectnessError(f"noise has mean {mean:.3f} and std {std:.3f}, expected 0, 1")
    return "N(0, 1) noise"


def compare_images(ours: torch.Tensor, ref: torch.Tensor, ours_label: torch.Tensor,
                   ref_label: torch.Tensor) -> str:
    """Labels equal but for ties, images equal but near them (thresholds above)."""
    mismatch = float((ours_label.cpu() != ref_label.cpu()).double().mean())
    if mismatch > LABEL_MISMATCH_MAX:
        raise CorrectnessError(f"{100 * mismatch:.3f} % of labels differ from the reference "
                               f"(at most {100 * LABEL_MISMATCH_MAX} % allowed at ties)")
    outliers = float(((ours.cpu().double() - ref.cpu().double()).abs() > IMAGE_ATOL)
                     .double().mean())
    if outliers > IMAGE_OUTLIER_MAX:
        raise CorrectnessError(f"{100 * outliers:.2f} % of image voxels differ from the "
                               f"reference by more than {IMAGE_ATOL}")
    return f"matches reference (labels {100 * mismatch:.3f} % at ties)"


def compare_to_reference(backend: str, w: Workload, device: torch.device, stages,
                         seed: int) -> str:
    """Run the requested parts of `backend` and of the reference on a small size; raise
    CorrectnessError where they disagree. Each comparison runs once per process."""
    if backend == "reference":
        return "is the reference"
    done = []
    if set(stages) & {"full", "labels", "appearance", "gmm_shapes"}:
        done.append(_compare_synthesize(backend, w, device, seed))
    if "bias_field" in stages:
        done.append(_compare_bias_field(backend, w, device, seed))
    if "philox_fill" in stages:
        done.append(_compare_philox_fill(backend, device, seed))
    return "; ".join(done)


@functools.lru_cache(maxsize=None)
def _compare_synthesize(backend, w, device, seed) -> str:
    kw = dict(seed=seed, start_index=7, config=w.config)
    image, label = synthesize(1, w.small_shape(), w.num_labels, device=device,
                              backend=backend, **kw)
    ref_image, ref_label = synthesize(1, w.small_shape(), w.num_labels, device="cpu",
                                      backend="reference", **kw)
    return "synthesize " + compare_images(image, ref_image, label, ref_label)


@functools.lru_cache(maxsize=None)
def _compare_bias_field(backend, w, device, seed) -> str:
    shape = w.small_shape()
    ws = _workspace(w, 1, shape, "cpu", start=11)
    params.draw_appearance(ws, shape, w.config, seed, "reference")
    image = 0.5 + torch.rand(1, w.apps, *shape, generator=torch.Generator().manual_seed(seed))
    ours = bias_field(image.clone().to(device), ws.bias_coef.to(device), ws.scalars.to(device),
                      backend).cpu()
    ref = bias_field(image.clone(), ws.bias_coef, ws.scalars, "reference")
    if not torch.allclose(ours, ref, rtol=OP_RTOL, atol=OP_ATOL):
        raise CorrectnessError("bias_field differs from the reference by "
                               f"{float((ours - ref).abs().max()):.3g}")
    return "bias_field matches reference"


@functools.lru_cache(maxsize=None)
def _compare_philox_fill(backend, device, seed) -> str:
    index = torch.tensor([3, 1 << 40])
    ours = philox_fill(torch.empty(2, 1001, device=device), index.to(device), seed,
                       streams.IMAGE_NOISE, "normal", backend).cpu()
    ref = philox_fill(torch.empty(2, 1001), index, seed, streams.IMAGE_NOISE, "normal",
                      "reference")
    if not torch.allclose(ours, ref, rtol=OP_RTOL, atol=OP_ATOL):
        raise CorrectnessError("philox_fill differs from the reference")
    return "philox_fill matches reference"


# ---- our cases ---------------------------------------------------------------------------

def _workspace(w: Workload, batch: int, shape, device, start: int = 0) -> params.Workspace:
    ws = params.make_workspace(batch, shape, w.num_labels, w.apps, w.config, device)
    torch.arange(start, start + batch, out=ws.sample_index)
    return ws


def rasd_cases(w: Workload, backend: str, device: torch.device, stages,
               seed: int) -> list[Case]:
    """Our stages with `backend`; every call draws fresh samples (the next batch of indices)."""
    B, S, K, cfg = w.batch, w.shape, w.num_labels, w.config
    tool = f"rasd-{backend}"
    image = torch.empty(B, w.apps, *S, device=device)
    label = torch.empty(B, *S, dtype=torch.uint8, device=device)
    ws = _workspace(w, B, S, device)
    batches = itertools.count(1)

    def next_batch() -> int:
        start = next(batches) * B
        torch.arange(start, start + B, out=ws.sample_index)
        return start

    def full():
        synthesize_into(image, label, num_labels=K, seed=seed, start_index=next_batch(),
                        config=cfg, backend=backend)
        return image, label

    def labels():
        next_batch()
        return synthesis.draw_labels(ws, label, cfg, seed, backend)

    def render():
        next_batch()
        return synthesis.draw_images(ws, image, label, cfg, seed, backend)

    noise = torch.empty(B, w.apps, *S, device=device)
    biased = torch.ones(B, w.apps, *S, device=device)

    def fill():
        return philox_fill(noise, ws.sample_index, seed, streams.IMAGE_NOISE, "normal",
                           backend)

    def shapes_op():
        return gmm_shapes(label, ws.fields, ws.warps, cfg.field_nodes, cfg.warp_nodes,
                          cfg.shapes, backend)

    def bias_op():
        return bias_field(biased, ws.bias_coef, ws.scalars, backend)

    def positive(x):
        if not (bool(torch.isfinite(x).all()) and float(x.min()) > 0):
            raise CorrectnessError("biased image is not finite and positive")
        return "biased image finite, positive"

    table = {
        "full": (full, lambda out: check_labels(out[1], B, S, K) + ", "
                 + check_image(out[0], B, w.apps, S)),
        "labels": (labels, lambda out: check_labels(out, B, S, K)),
        "appearance": (render, lambda out: check_image(out, B, w.apps, S)),
        "philox_fill": (fill, check_normals),
        "gmm_shapes": (shapes_op, lambda out: check_labels(out, B, S, K)),
        "bias_field": (bias_op, positive),
    }
    if set(stages) & {"appearance", "gmm_shapes", "bias_field"}:
        labels()   # labels and drawn parameters for the stages that start from them
        params.draw_appearance(ws, S, cfg, seed, backend)
    return [Case(tool, stage, B, device, *table[stage]) for stage in OUR_STAGES
            if stage in stages]


@functools.lru_cache(maxsize=4)
def make_labels(w: Workload, backend: str, device: torch.device, seed: int) -> torch.Tensor:
    """Label maps [B, *S] by our ops: the input that the literal generator's appearance stage,
    TorchIO and MONAI are given, made once per workload outside the timing."""
    ws = _workspace(w, w.batch, w.shape, device)
    label = torch.empty(w.batch, *w.shape, dtype=torch.uint8, device=device)
    return synthesis.draw_labels(ws, label, w.config, seed, backend)


# ---- the literal generator ---------------------------------------------------------------

def literal_cases(w: Workload, device: torch.device, stages, batch: int, seed: int,
                  given: torch.Tensor | None = None) -> list[Case]:
    """The published generator, one sample after another as it is written; its appearance
    stage renders the label maps `given` [>= batch, *S] (needed for that stage)."""
    from . import literal   # the module of the published method, imported only when timed

    S, K, cfg = w.shape, w.num_labels, w.config
    counter = itertools.count(1)

    def full():
        return literal.generate(batch, S, K, seed=seed, config=cfg, device=device,
                                start_index=next(counter) * batch)

    def labels():
        start = next(counter) * batch
        return torch.stack([literal.label_map(literal.sample_generator(
            seed, start + b, "anatomy", device), S, K, cfg, device) for b in range(batch)])

    def render():
        start = next(counter) * batch
        return torch.stack([literal.render(
            given[b], K, cfg, literal.sample_generator(seed, start + b, "appearance0", device),
            literal.sample_generator(seed, start + b, "bias0", device), device)[None]
            for b in range(batch)])

    table = {
        "full": (full, lambda out: check_labels(out[1], batch, S, K) + ", "
                 + check_image(out[0], batch, cfg.channels, S)),
        "labels": (labels, lambda out: check_labels(out, batch, S, K)),
        "appearance": (render, lambda out: check_image(out, batch, 1, S)),
    }
    return [Case("literal", stage, batch, device, *table[stage]) for stage in LITERAL_STAGES
            if stage in stages]


# ---- running -----------------------------------------------------------------------------

def runs_on(backend: str, device: torch.device) -> bool:
    try:
        backends.resolve(backend, device)
    except (RuntimeError, ValueError):
        return False
    return True


def select_backends(requested, device: torch.device) -> list[str]:
    """Default: the fast backends built for the device (the float64 reference only if there
    is none: it takes minutes per 128^3 volume); 'all': every backend that runs here."""
    usable = [b for b in backends.available() if runs_on(b, device)]
    if not requested:
        fast = [b for b in usable if b != "reference"
                and not (b == "triton" and device.type != "cuda")]   # interpreter: not a fast path
        return fast or ["reference"]
    if "all" in requested:
        return usable
    for b in requested:
        if b not in usable:
            reason = backends.unavailable_reason(b) or f"it does not run on {device}"
            raise SystemExit(f"rasd-bench: backend {b!r} cannot be benchmarked: {reason}")
    return list(dict.fromkeys(requested))


def workloads(args) -> list[Workload]:
    if args.shape:
        config = SynthesisConfig()
        return [Workload("custom", tuple(args.shape), args.labels or 8, args.batch or 1,
                         config)]
    out = []
    for name in args.preset or ["rasd3d"]:
        shape, labels, config = PRESETS[name]
        out.append(Workload(name, shape, args.labels or labels,
                            args.batch or PRESET_BATCH.get(name, 1), config))
    return out


def tool_cases(tool: str, w: Workload, args, device, rasd_backends) -> list[Case]:
    if tool == "rasd":
        out = []
        for backend in rasd_backends:
            checked = compare_to_reference(backend, w, device, args.stages, args.seed)
            for case in rasd_cases(w, backend, device, args.stages, args.seed):
                case.note = checked
                out.append(case)
        return out
    given = None
    if tool != "literal" or "appearance" in args.stages:
        given = make_labels(w, rasd_backends[0], device, args.seed)
    if tool == "literal":
        return literal_cases(w, device, args.stages, min(w.batch, args.literal_batch),
                             args.seed, given)
    return alternatives.cases(tool, given, w.num_labels, w.config, args.seed, args.stages)


def tool_unavailable(tool: str, w: Workload) -> str | None:
    if tool != "rasd" and w.config.acquisition_enabled:
        return ("its pipeline has no acquisition options, so it would do less work; compare "
                "the options themselves with --acquisition")
    if tool in alternatives.TOOLS:
        return alternatives.unavailable_reason(tool)
    if tool == "literal":
        try:
            from . import literal  # noqa: F401
        except ImportError as exc:
            return f"the literal generator cannot be imported: {exc}"
        if w.config.shapes != "perlin":
            return "the published generator has only shapes='perlin'"
    return None


def run(args) -> list[dict]:
    """Every requested (preset, tool, stage) checked and timed: one record per result."""
    device = torch.device(args.device)
    rasd_backends = select_backends(args.backends, device)
    env = timing.environment(device, args.command)
    bandwidth: dict[str, float] = {}
    records = []
    for w in workloads(args):
        for tool in args.tools:
            reason = tool_unavailable(tool, w)
            if reason is not None:
                if args.tools_explicit:
                    raise SystemExit(f"rasd-bench: {tool}: {reason}")
                _log(f"skipping {tool}: {reason}")
                continue
            for case in tool_cases(tool, w, args, device, rasd_backends):
                result = timing.run_case(case, warmup=args.warmup, repeats=args.repeats,
                                         min_repeats=args.min_repeats, budget_s=args.budget)
                key = str(case.device)
                if key not in bandwidth:
                    bandwidth[key] = timing.copy_bandwidth(case.device)
                for stage in (case.stage, *case.aliases):
                    rec = record(result, w, stage, bandwidth[key], env)
                    _log(f"{w.preset} {stage:<11} {case.tool:<15} "
                         f"{number(rec['samples_per_s'])} samples/s")
                    records.append(rec)
    add_speedups(records)
    return records


def record(result: timing.Result, w: Workload, stage: str, bandwidth: float,
           env: dict) -> dict:
    case, m = result.case, result.measurement
    rate = m.samples_per_s()
    nbytes = w.bytes_written(stage)
    floor = timing.floor_samples_per_s(nbytes, bandwidth)
    note = case.note if stage == case.stage else f"same measurement as {case.stage}"
    return {
        "tool": case.tool, "preset": w.preset, "stage": stage, "samples_per_s": rate,
        "spread": m.spread(), "device": str(case.device),
        "device_name": timing.device_name(case.device),
        "shape": list(w.shape), "labels": w.num_labels, "batch": case.batch,
        "repeats": len(m.seconds), "ms_per_sample": 1e3 / rate,
        "bytes_per_sample": nbytes, "copy_bytes_per_s": bandwidth,
        "floor_samples_per_s": floor, "floor_fraction": rate / floor,
        "speedup": None, "speedup_of": None, "check": result.check, "note": note, "env": env,
    }


def add_speedups(records: list[dict]) -> None:
    """speedup = samples/s of the fastest rasd-* tool on the same preset and stage / this."""
    best = {}
    for r in records:
        if r["tool"].startswith("rasd"):
            key = (r["preset"], r["stage"])
            if key not in best or r["samples_per_s"] > best[key]["samples_per_s"]:
                best[key] = r
    for r in records:
        ours = best.get((r["preset"], r["stage"]))
        if ours is not None and not r["tool"].startswith("rasd"):
            r["speedup"] = ours["samples_per_s"] / r["samples_per_s"]
            r["speedup_of"] = ours["tool"]


# ---- output ------------------------------------------------------------------------------

COLUMNS = ("preset", "stage", "tool", "batch", "samples/s", "p20-p80", "ms/sample",
           "% of floor", "ours/this")


def number(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def order_key(r: dict) -> tuple:
    tool_rank = (0 if r["tool"].startswith("rasd") else 1 + TOOLS.index(r["tool"])
                 if r["tool"] in TOOLS else 9)
    return (STAGES.index(r["stage"]) if r["stage"] in STAGES else 99, tool_rank, r["tool"])


def table_rows(records: list[dict]) -> list[list[str]]:
    presets = list(dict.fromkeys(r["preset"] for r in records))
    rows = []
    for preset in presets:
        for r in sorted((r for r in records if r["preset"] == preset), key=order_key):
            s = r["spread"]
            rows.append([r["preset"], r["stage"], r["tool"], str(r["batch"]),
                         number(r["samples_per_s"]), f"{number(s['p20'])}-{number(s['p80'])}",
                         number(r["ms_per_sample"]), f"{100 * r['floor_fraction']:.3g} %",
                         "" if r["speedup"] is None else f"{number(r['speedup'])}x"])
    return rows


def format_table(records: list[dict], markdown: bool = False) -> str:
    """The results as an aligned text table, or a Markdown table."""
    rows = table_rows(records)
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |",
                 "|" + "|".join("---" if i < 3 else "---:" for i in range(len(COLUMNS))) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(COLUMNS)]

    def line(cells):
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(COLUMNS), line(["-" * w for w in widths])]
                     + [line(row) for row in rows])


def format_header(records: list[dict]) -> str:
    env = records[0]["env"]
    v = env["versions"]
    devices = {}
    for r in records:
        devices.setdefault(r["device"], (r["device_name"], r["copy_bytes_per_s"]))
    lines = [f"date {env['date']}  commit {env['commit']}",
             f"machine {env['cpu']} ({env['cores']} cores, torch threads "
             f"{env['torch_threads']})",
             "versions " + ", ".join(f"{k} {v[k]}" for k in v)]
    for dev, (name, bw) in devices.items():
        lines.append(f"floor on {dev} ({name}): copy writes {bw / 1e9:.2f} GB/s; a sample "
                     "writes 4 bytes per image voxel and channel + 1 per label voxel")
    return "\n".join(lines)


def format_summary(records: list[dict]) -> str:
    lines = []
    for r in records:
        if r["stage"] == "full" and r["speedup"] is not None:
            lines.append(f"{r['preset']} full: {r['speedup_of']} is {number(r['speedup'])}x "
                         f"{r['tool']}" + (f" ({r['note']})" if r["note"] else ""))
    return "\n".join(lines)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="rasd-bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    # List flags take several values, or repeat (the values add up): `--preset rasd3d rasd2d`
    # and `--preset rasd3d --preset rasd2d` both select two presets.
    many = dict(nargs="+", action="extend")
    p.add_argument("--preset", choices=sorted(PRESETS), **many,
                   help="published workloads (default rasd3d)")
    p.add_argument("--shape", nargs="+", type=int, help="custom spatial shape (2 or 3 sizes)")
    p.add_argument("--labels", type=int, help="number of labels K (default: the preset's, 8)")
    p.add_argument("--batch", type=int,
                   help="samples per call (default: rasd3d 4, rasd2d 16, custom 1)")
    p.add_argument("--tools", choices=TOOLS, **many, help="default: all installed")
    p.add_argument("--backends", choices=(*backends.BACKENDS, "all"), **many,
                   help="our backends (default: the fast ones built for the device)")
    p.add_argument("--stages", choices=STAGES, **many, help="default: all")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5, help="timed calls at most")
    p.add_argument("--min-repeats", type=int, default=2, help="timed calls at least")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed calls, the first of which is checked")
    p.add_argument("--budget", type=float, default=10.0,
                   help="seconds of timed calls per case, within the repeat limits")
    p.add_argument("--literal-batch", type=int, default=1,
                   help="samples per call of the literal generator (it makes one after "
                        "another, so its rate does not depend on it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object per result")
    p.add_argument("--save", help="also write the JSON lines to this file")
    p.add_argument("--acquisition", action="store_true",
                   help="time each acquisition option of SPEC 9 (on our fastest backend) "
                        "beside TorchIO's RandomAnisotropy and MONAI's "
                        "RandSimulateLowResolution, instead of the tools table")
    p.add_argument("--min-speedup", type=float,
                   help="exit 1 unless ours beats every other tool's full pipeline this much")
    args = p.parse_args(argv)
    if args.shape and len(args.shape) not in (2, 3):
        p.error("--shape takes 2 or 3 sizes")
    if args.shape and args.preset:
        p.error("give --preset or --shape, not both")
    for name in ("batch", "labels", "repeats", "min_repeats", "literal_batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    args.tools_explicit = args.tools is not None
    args.tools = list(dict.fromkeys(args.tools or TOOLS))
    args.stages = list(dict.fromkeys(args.stages or STAGES))
    if args.preset:
        args.preset = list(dict.fromkeys(args.preset))
    args.command = ["rasd-bench", *(sys.argv[1:] if argv is None else argv)]
    return args


def run_acquisition(args) -> list[dict]:
    """The acquisition option table (rasd_bench.acquisition) for every requested workload."""
    device = torch.device(args.device)
    backend = select_backends(args.backends, device)[0]
    records = []
    for w in workloads(args):
        records += acquisition.option_records(
            w, backend, device, args.seed, log=_log, repeats=args.repeats,
            min_repeats=args.min_repeats, warmup=args.warmup, budget_s=args.budget)
    return records


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.acquisition:
        records = run_acquisition(args)
        if args.save:
            with open(args.save, "w") as f:
                f.write("".join(json.dumps(r) + "\n" for r in records))
        print(acquisition.format_options(records))
        return 0
    try:
        records = run(args)
    except CorrectnessError as exc:
        _log(f"rasd-bench: correctness check failed, nothing timed: {exc}")
        return 2
    lines = [json.dumps(r) for r in records]
    if args.save:
        with open(args.save, "w") as f:
            f.write("".join(line + "\n" for line in lines))
    if args.json:
        print("\n".join(lines))
    elif records:
        print("\n\n".join(s for s in (format_header(records), format_table(records),
                                      format_summary(records)) if s))
    if args.min_speedup is not None:
        slow = [r for r in records if r["stage"] == "full" and r["speedup"] is not None
                and r["speedup"] < args.min_speedup]
        for r in slow:
            _log(f"rasd-bench: {r['preset']} full: {r['speedup_of']} is only "
                 f"{r['speedup']:.2f}x {r['tool']} (required {args.min_speedup}x)")
        if slow:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
