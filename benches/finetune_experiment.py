"""Does RaSD pre-training help on real images? Synthetic pre-training against scratch.

    python benches/finetune_experiment.py --quick                 # smoke test, about a minute
    python benches/finetune_experiment.py --out runs/ft_final \\
        --plot docs/finetune.png                                  # the full experiment, ~30 min

1. Pre-train a 2D MONAI UNet on RaSD synthetic images only (rasd_pretrain.train: fresh batches
   every step, 1 channel in [0, 1], the fine-tuning image size), or reuse --checkpoint.
2. Fine-tune it and the same architecture from scratch on the MNI152 tissue task
   (rasd_pretrain.mni_tissue: background / CSF / GM / WM; k training slices from one band of the
   brain, test slices more than --gap mm away), with identical budgets, for every k and seed.
3. Write a Markdown report (table of mean and std Dice, wall times, the command) and a PNG.

Results go to OUT/results.jsonl, one line per fine-tuning run; a rerun with the same OUT skips
the runs already there and resumes an interrupted pre-training.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

try:
    import rasd_pretrain  # noqa: F401
except ImportError:   # run from a source checkout without installing
    sys.path[:0] = [str(Path(__file__).resolve().parents[1] / p) for p in ("python", ".")]

import torch

import rasd_kernels
from rasd_kernels import backends
from rasd_pretrain import train
from rasd_pretrain import finetune as ft
from rasd_pretrain import mni_tissue as mt
from rasd_pretrain.config import build
from rasd_pretrain.cli import _key_value

INITS = ("scratch", "pretrained")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--quick", action="store_true", help="tiny budgets (smoke test)")
    a("--out", default="runs/finetune_experiment", help="run folder")
    a("--report", help="Markdown report path (default OUT/report.md)")
    a("--plot", help="PNG path (default OUT/finetune.png)")
    g = p.add_argument_group("pre-training")
    g.add_argument("--checkpoint", help="reuse this pre-training checkpoint (skip step 1)")
    g.add_argument("--size", type=int, default=96, help="image size (pre-training and task)")
    g.add_argument("--labels", type=int, default=12, help="K of the synthetic label maps")
    g.add_argument("--pretrain-steps", type=int, default=4500)
    g.add_argument("--pretrain-batch", type=int, default=16)
    g.add_argument("--pretrain-lr", type=float, default=1e-3)
    g.add_argument("--pretrain-warmup", type=int, default=100)
    g.add_argument("--synth", type=_key_value, action="append", metavar="KEY=VALUE",
                   help="SynthesisConfig override, repeatable")
    g.add_argument("--pretrain-seed", type=int, default=0)
    g.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 128],
                   help="UNet channels per level")
    g.add_argument("--res-units", type=int, default=2, help="UNet residual units per level")
    g.add_argument("--embed-dim", type=int, default=32)
    g.add_argument("--backend", default="auto", help="synthesis backend")
    g.add_argument("--allow-slow-backend", action="store_true",
                   help="run without the C++ cpu backend (the float64 reference is slow)")
    g = p.add_argument_group("fine-tuning (identical for scratch and pre-trained)")
    g.add_argument("--ks", type=int, nargs="+", default=[1, 2, 5])
    g.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    g.add_argument("--steps", type=int, default=200)
    g.add_argument("--batch", type=int, default=8)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--warmup-steps", type=int, default=20)
    g.add_argument("--load", choices=ft.LOADS, default="network")
    g.add_argument("--no-augment", dest="augment", action="store_false")
    g.add_argument("--scale-range", type=float, nargs=2, default=[0.6, 1.2],
                   metavar=("LO", "HI"), help="zoom range of the augmentation")
    g.add_argument("--gamma-range", type=float, nargs=2, default=[0.7, 1.4],
                   metavar=("LO", "HI"), help="intensity gamma range of the augmentation")
    g.add_argument("--backbone-lr-scale", type=float, default=1.0,
                   help="backbone lr relative to --lr (0: linear probe)")
    g.add_argument("--eval-every", type=int, default=50)
    g.add_argument("--band", type=int, nargs=2, default=list(mt.DEFAULT_BAND))
    g.add_argument("--gap", type=int, default=mt.DEFAULT_GAP)
    return p


def apply_quick(args: argparse.Namespace) -> None:
    """Budgets small enough for a smoke test on two shared cores."""
    args.size, args.labels = 32, 6
    args.pretrain_steps, args.pretrain_batch, args.pretrain_warmup = 4, 4, 1
    args.channels, args.res_units = [8, 16, 32], 1
    args.ks, args.seeds = [1, 2], [0]
    args.steps, args.batch, args.warmup_steps, args.eval_every = 4, 2, 1, 2
    args.allow_slow_backend = True


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def model_kwargs(args) -> dict:
    return {"channels": list(args.channels), "strides": [2] * (len(args.channels) - 1),
            "num_res_units": args.res_units}


def pretrain(args) -> tuple[str, dict]:
    """Pre-train (or resume) into OUT/pretrain; returns (checkpoint, timing and loss curve)."""
    if "cpu" not in backends.available() and not args.allow_slow_backend:
        raise SystemExit(f"the C++ cpu synthesis backend is not available here "
                         f"({backends.unavailable_reason('cpu')}); build it first, or pass "
                         "--allow-slow-backend")
    out = os.path.join(args.out, "pretrain")
    config = build(dict(shape=(args.size, args.size), num_labels=args.labels,
                        batch=args.pretrain_batch, seed=args.pretrain_seed, backend=args.backend,
                        synthesis=dict(args.synth or []), model="unet",
                        model_kwargs=model_kwargs(args), embed_dim=args.embed_dim,
                        lr=args.pretrain_lr, warmup_steps=args.pretrain_warmup,
                        schedule="cosine", steps=args.pretrain_steps, out=out,
                        ckpt_every=max(1, args.pretrain_steps // 10),
                        log_every=max(1, args.pretrain_steps // 30), device="cpu"))
    last = os.path.join(out, "checkpoints", "last.pt")
    resume = os.path.exists(last)
    log(f"pre-training {config.steps} steps of batch {config.batch} at {config.shape}, "
        f"K = {config.num_labels}, backend {args.backend} ({'resuming' if resume else 'new'})")
    t0 = time.perf_counter()
    result = train(config, resume=True if resume else None, overwrite=not resume)
    wall = time.perf_counter() - t0
    rows = _read_log(os.path.join(out, "log.csv"))
    info = {"wall_s": wall, "steps": config.steps, "batch": config.batch,
            "synth_ms": _median([r["synth_ms"] for r in rows]),
            "model_ms": _median([r["model_ms"] for r in rows]),
            "elapsed_s": _total_elapsed(rows),
            "loss": [(int(r["step"]), r["loss"]) for r in rows],
            "config": config.to_dict()}
    with open(os.path.join(args.out, "pretrain.json"), "w") as f:
        json.dump(info, f)
    return result.checkpoint, info


def _read_log(path: str) -> list[dict]:
    import csv
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _median(values):
    values = sorted(values)
    return values[len(values) // 2] if values else float("nan")


def _total_elapsed(rows) -> float:
    """Training seconds summed over the segments of a possibly resumed log."""
    total, prev = 0.0, 0.0
    for r in rows:
        total += r["elapsed_s"] - prev if r["elapsed_s"] >= prev else r["elapsed_s"]
        prev = r["elapsed_s"]
    return total


def finetune_all(args, checkpoint: str) -> list[dict]:
    path = os.path.join(args.out, "results.jsonl")
    done = {}
    if os.path.exists(path):
        for line in open(path):
            r = json.loads(line)
            done[(r["k"], r["seed"], r["init"])] = r
    spec, state = ft.read_weights(checkpoint)
    slices = mt.build(args.size)
    config = dict(steps=args.steps, batch=args.batch, lr=args.lr,
                  warmup_steps=args.warmup_steps,
                  augment="affine" if args.augment else "none",   # this page's protocol
                  eval_every=args.eval_every, load=args.load,
                  scale_range=tuple(args.scale_range), gamma_range=tuple(args.gamma_range),
                  backbone_lr_scale=args.backbone_lr_scale)
    results = []
    for k in args.ks:
        data = ft.mni_task(k, band=args.band, gap=args.gap, slices=slices)
        for seed in args.seeds:
            for init in INITS:
                if (k, seed, init) in done:
                    results.append(done[(k, seed, init)])
                    continue
                r = ft.finetune(data, spec, ft.FinetuneConfig(seed=seed, **config),
                                state=state if init == "pretrained" else None)
                row = {"k": k, **r.to_dict()}
                row.pop("losses")
                results.append(row)
                with open(path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                log(f"k={k} seed={seed} {init:10s} mean Dice {r.mean_dice:.4f} "
                    f"(CSF {r.dice[1]:.3f}, GM {r.dice[2]:.3f}, WM {r.dice[3]:.3f}) "
                    f"{r.train_s:.0f} s")
    return results


# ---- report ------------------------------------------------------------------------------

def mean_std(values) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0


def summary(results: list[dict]) -> dict:
    """{(k, init): {"mean": (m, s), "csf": ..., "gm": ..., "wm": ..., "n", "train_s"}}."""
    out = {}
    for k in sorted({r["k"] for r in results}):
        for init in INITS:
            rows = [r for r in results if r["k"] == k and r["init"] == init]
            if not rows:
                continue
            s = {"n": len(rows), "mean": mean_std([r["mean_dice"] for r in rows]),
                 "train_s": mean_std([r["train_s"] for r in rows])}
            for c, name in enumerate(rows[0]["classes"]):
                if c:
                    s[name] = mean_std([r["dice"][c] for r in rows])
            out[(k, init)] = s
    return out


def wins(results: list[dict], k: int) -> str:
    """Seeds where pre-trained beats scratch (paired by seed)."""
    by = {(r["seed"], r["init"]): r["mean_dice"] for r in results if r["k"] == k}
    seeds = sorted({s for s, _ in by})
    n = sum(by[(s, "pretrained")] > by[(s, "scratch")] for s in seeds
            if (s, "pretrained") in by and (s, "scratch") in by)
    return f"{n}/{len(seeds)}"


def table(results: list[dict]) -> str:
    s = summary(results)
    tissues = [c for c in results[0]["classes"][1:]]
    head = ("| k | init | mean Dice | " + " | ".join(f"{t.upper()} Dice" for t in tissues)
            + " | pre-trained wins | fine-tune s/run |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for (k, init), v in s.items():
        cells = [f"{v['mean'][0]:.4f} ± {v['mean'][1]:.4f}"]
        cells += [f"{v[t][0]:.3f} ± {v[t][1]:.3f}" for t in tissues]
        w = wins(results, k) if init == "pretrained" else ""
        lines.append(f"| {k} | {init} | " + " | ".join(cells)
                     + f" | {w} | {v['train_s'][0]:.0f} |")
    return "\n".join(lines)


def plot(results: list[dict], pre: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s = summary(results)
    ks = sorted({k for k, _ in s})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for i, init in enumerate(INITS):
        m = [s[(k, init)]["mean"][0] for k in ks]
        e = [s[(k, init)]["mean"][1] for k in ks]
        ax.errorbar([x + (i - 0.5) * 0.08 for x in range(len(ks))], m, yerr=e, marker="o",
                    capsize=4, label=init)
    ax.set_xticks(range(len(ks)), [str(k) for k in ks])
    ax.set_xlabel("training slices k")
    ax.set_ylabel("test Dice (mean of CSF, GM, WM)")
    ax.set_title("MNI152 tissue, test slices far from the training band")
    ax.legend()
    ax = axes[1]
    colors = {"scratch": "C0", "pretrained": "C1"}
    for r in results:
        if r["k"] == ks[0]:
            steps, dice = zip(*r["curve"])
            ax.plot(steps, dice, color=colors[r["init"]], alpha=0.7,
                    label=r["init"] if r["seed"] == results[0]["seed"] else None)
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("test Dice (mean of CSF, GM, WM)")
    ax.set_title(f"learning curves, k = {ks[0]} (one line per seed)")
    ax.legend()
    ax = axes[2]
    if pre.get("loss"):
        steps, loss = zip(*pre["loss"])
        ax.plot(steps, loss, alpha=0.3, label="per step")
        w = max(1, len(loss) // 50)
        smooth = torch.tensor(loss).unfold(0, w, 1).mean(1).tolist() if len(loss) >= w else []
        ax.plot(steps[w - 1:], smooth, label=f"mean of {w} steps")
        ax.legend()
    ax.set_xlabel("pre-training step")
    ax.set_ylabel("RaSD loss (seg + dec)")
    ax.set_title("synthetic pre-training")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(args, argv, results, pre, wall, checkpoint) -> str:
    cmd = "python benches/finetune_experiment.py " + " ".join(shlex.quote(a) for a in argv)
    ft_s = sum(r["train_s"] + r["eval_s"] for r in results)
    if pre.get("steps"):
        pre_line = (f"pre-training: {pre['steps']} steps of batch {pre['batch']} "
                    f"({pre['steps'] * pre['batch']} synthetic images, K = {args.labels}, "
                    f"synthesis overrides {dict(args.synth or [])}), "
                    f"{pre['elapsed_s'] / 60:.1f} min (median per step: synthesis "
                    f"{pre['synth_ms']:.0f} ms, model {pre['model_ms']:.0f} ms)")
    else:
        pre_line = f"pre-training: reused {checkpoint}"
    augment = (f"zoom {args.scale_range[0]} .. {args.scale_range[1]}, gamma "
               f"{args.gamma_range[0]} .. {args.gamma_range[1]}" if args.augment else "off")
    a = results[0]
    lines = [
        f"Command: `{cmd}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), torch "
        f"{torch.__version__}, rasd_kernels {rasd_kernels.__version__}, synthesis backends "
        f"{backends.available()}.",
        "",
        f"- {pre_line}",
        f"- fine-tuning: {len(results)} runs, {args.steps} steps of batch {args.batch} each, "
        f"lr {args.lr} (AdamW, warm-up {args.warmup_steps}, cosine; backbone x "
        f"{args.backbone_lr_scale}), augmentation {augment}, load {args.load}; "
        f"{ft_s / 60:.1f} min in all",
        f"- task: {args.size}^2 MNI152 axial slices; training band z = {args.band} mm, test "
        f"slices more than {args.gap} mm from it ({len(a['meta']['test_z'])} slices)",
        f"- compute: {(pre.get('elapsed_s', 0.0) + ft_s) / 60:.1f} min (pre-training plus "
        f"fine-tuning as logged); this invocation: {wall / 60:.1f} min (work already in "
        f"the run folder is reused)",
        "",
        table(results),
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.quick:
        apply_quick(args)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    if args.checkpoint:
        checkpoint, pre = args.checkpoint, {}
    else:
        checkpoint, pre = pretrain(args)
        log(f"pre-training done: {pre['elapsed_s'] / 60:.1f} min, final loss "
            f"{pre['loss'][-1][1]:.4f}")
    results = finetune_all(args, checkpoint)
    wall = time.perf_counter() - t0
    text = report(args, argv, results, pre, wall, checkpoint)
    report_path = args.report or os.path.join(args.out, "report.md")
    plot_path = args.plot or os.path.join(args.out, "finetune.png")
    os.makedirs(os.path.dirname(os.path.abspath(report_path)), exist_ok=True)
    with open(report_path, "w") as f:
        f.write(text)
    plot(results, pre, plot_path)
    print(text)
    log(f"report: {report_path}; plot: {plot_path}")
    s = summary(results)
    for k in sorted({k for k, _ in s}):
        if (k, "scratch") in s and (k, "pretrained") in s:
            d = s[(k, "pretrained")]["mean"][0] - s[(k, "scratch")]["mean"][0]
            log(f"k = {k}: pre-trained minus scratch mean Dice {d:+.4f}")
    return 0 if all(math.isfinite(r["mean_dice"]) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
