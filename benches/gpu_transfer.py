"""The far end of the transfer budget curve, on a GPU, in one call.

    python benches/gpu_transfer.py                  # on a GPU machine: 5 min of pre-training
    python benches/gpu_transfer.py --minutes 3      # shorter pre-training
    python benches/gpu_transfer.py --quick          # anywhere, tiny (a smoke test)

For the 2D and the 3D task of benches/transfer_experiment.py (same backbones, synthesis,
batch and fine-tuning protocol, so the numbers extend that curve): pre-train for a fixed share
of --minutes at the device's speed, with checkpoints at 5 budgets spaced by 2x (the largest
is what the time allows), then fine-tune scratch and every budget on the MNI152 tissue task
with 3 seeds, and print one table of pre-trained minus scratch mean Dice. Results go to
OUT/results.jsonl (a rerun skips finished work) and the table to OUT/report.md.

Needs the `finetune` extra (nilearn's packaged MNI152 template, monai); no network.
Without CUDA it runs on the CPU (use --quick there).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

try:
    import rasd_pretrain  # noqa: F401
except ImportError:   # run from a source checkout without installing
    sys.path[:0] = [str(Path(__file__).resolve().parents[1] / p) for p in ("python", ".")]

import torch

from rasd_pretrain import finetune as ft
from rasd_pretrain import transfer as tr

START = time.time()


def log(msg: str) -> None:
    print(f"[{time.time() - START:6.1f}s] {msg}", flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--minutes", type=float, default=5.0, help="pre-training time of both tasks together")
    a("--share-3d", type=float, default=0.5, help="fraction of --minutes for the 3D task")
    a("--dims", type=int, nargs="+", default=[2, 3], choices=[2, 3])
    a("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a("--k", type=int, default=2, help="training slices (2D) / patches (3D)")
    a("--augment", default=ft.DEFAULT_AUGMENT, help="fine-tuning augmentation")
    a("--device", default="auto", help="auto (cuda if available), cuda, cpu")
    a("--out", default="runs/gpu_transfer")
    a("--quick", action="store_true", help="tiny sizes, a few seconds of pre-training")
    return p


def plan(args) -> dict[int, tuple[dict, dict, float]]:
    """{dims: (pre-training setup, fine-tuning arguments, pre-training seconds)}."""
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else (
        "cpu" if args.device == "auto" else args.device)
    seconds = {2: (1 - args.share_3d) * args.minutes * 60, 3: args.share_3d * args.minutes * 60}
    if args.quick:
        setups = {2: (tr.QUICK_2D, tr.FINETUNE_QUICK), 3: (tr.QUICK_3D, tr.FINETUNE_QUICK)}
    else:
        setups = {2: (tr.SETUP_2D, tr.FINETUNE_2D), 3: (tr.SETUP_3D, tr.FINETUNE_3D)}
    # The synthesis backend follows the device (auto: the fastest kernels there).
    return {d: (dict(setups[d][0], device=device, backend="auto"),
                dict(setups[d][1], device=device), seconds[d]) for d in args.dims}


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.quick:
        args.minutes, args.seeds = min(args.minutes, 0.05), args.seeds[:1]
    os.makedirs(args.out, exist_ok=True)
    results = os.path.join(args.out, "results.jsonl")
    device = "cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    log(f"device {device}" + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else "")
        + f"; pre-training {args.minutes:g} min in all; results {results}")
    cache, gains = {}, []
    for dims, (setup, ft_args, seconds) in plan(args).items():
        config = tr.pretrain_config(setup, os.path.join(args.out, f"pretrain{dims}d"))
        rows = tr.run_task(config, k=args.k, seeds=args.seeds, augments=[args.augment],
                           curve_augment=args.augment, finetune_args=ft_args,
                           results=results, seconds=seconds, cache=cache, log=log,
                           probe_steps=2 if args.quick else 20,
                           n_budgets=3 if args.quick else 5)
        gains += tr.gain_rows(rows, dims, args.k, args.augment)
    table = tr.gain_table(gains)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(table + "\n")
    print("\n" + table + "\n", flush=True)
    print(json.dumps({"gpu_transfer": [{k: g[k] for k in ("dims", "budget", "samples", "gain",
                                                           "wins")} for g in gains]}))
    log("done")
    return 0 if gains else 1


if __name__ == "__main__":
    sys.exit(main())
