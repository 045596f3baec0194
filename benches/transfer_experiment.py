"""Does RaSD pre-training transfer, and from which budget? A 2D and a 3D task, a budget curve.

    python benches/transfer_experiment.py --quick --out /tmp/transfer_quick   # smoke test
    python benches/transfer_experiment.py --out runs/transfer --threads 1 \\
        --plot docs/transfer.png                                               # the experiment

For each dimension (rasd_pretrain.transfer): one pre-training run on synthetic data only, with
a constant learning rate after warm-up, saves a checkpoint at every budget (a checkpoint at
step b is the model of a b-step run). Then, on the MNI152 tissue task of the same dimension
(2D: 96^2 slices, k training slices from one band; 3D: 24^3 patches at 2 mm, k training
patches from one slab, sliding-window evaluation on the lower brain), the same architecture is
fine-tuned from scratch and from every budget, with identical budgets, for every seed:

* the budget curve: pre-trained minus scratch mean Dice against synthetic samples seen, under
  --curve-augment;
* the augmentation comparison: scratch and the largest budget under every --augments.

Results go to OUT/results.jsonl, one line per fine-tuning run; a rerun skips what is there and
resumes the pre-training runs.
"""

from __future__ import annotations

import argparse
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

from rasd_pretrain import augment as aug
from rasd_pretrain import finetune as ft
from rasd_pretrain import transfer as tr

BUDGETS = {2: [32, 64, 128, 256, 512], 3: [50, 100, 200, 400, 800]}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--quick", action="store_true", help="tiny sizes and budgets (smoke test)")
    a("--out", default="runs/transfer", help="run folder")
    a("--dims", type=int, nargs="+", default=[2, 3], choices=[2, 3])
    a("--budgets-2d", type=int, nargs="+", default=BUDGETS[2], help="pre-training steps")
    a("--budgets-3d", type=int, nargs="+", default=BUDGETS[3], help="pre-training steps")
    a("--k-2d", type=int, default=2, help="training slices of the 2D task")
    a("--k-3d", type=int, default=2, help="training patches of the 3D task")
    a("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a("--augments", nargs="+", default=["affine", "flip-rot90"], choices=aug.AUGMENTS,
      help="augmentations compared at scratch and the largest budget")
    a("--curve-augment", default=ft.DEFAULT_AUGMENT, choices=aug.AUGMENTS,
      help="augmentation of the budget curve")
    a("--no-pretrain", dest="pretrain", action="store_false",
      help="fine-tune only the budget checkpoints already saved")
    a("--threads", type=int, help="torch threads (1 is fastest on shared cores)")
    a("--report", help="Markdown report (default OUT/report.md)")
    a("--plot", help="PNG of the budget curve (default OUT/transfer.png)")
    return p


def setups(quick: bool) -> dict[int, tuple[dict, dict]]:
    """{dims: (pre-training setup, fine-tuning arguments)}."""
    if not quick:
        return {2: (tr.SETUP_2D, tr.FINETUNE_2D), 3: (tr.SETUP_3D, tr.FINETUNE_3D)}
    return {2: (tr.QUICK_2D, tr.FINETUNE_QUICK), 3: (tr.QUICK_3D, tr.FINETUNE_QUICK)}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def report(args, argv, groups, rows, wall) -> str:
    cmd = "python benches/transfer_experiment.py " + " ".join(shlex.quote(a) for a in argv)
    lines = [f"Command: `{cmd}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), torch "
             f"{torch.__version__}, {torch.get_num_threads()} thread(s); this invocation "
             f"{wall / 60:.1f} min (work already in the run folder is reused).", ""]
    for title, gains in groups.items():
        lines += [f"### {title}", "", tr.gain_table(gains), ""]
    s = sum(r["train_s"] + r["eval_s"] for r in rows)
    lines.append(f"Fine-tuning: {len(rows)} runs, {s / 60:.1f} min in all.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    budgets = {2: args.budgets_2d, 3: args.budgets_3d}
    ks = {2: args.k_2d, 3: args.k_3d}
    if args.quick:
        budgets, args.seeds = {2: [1, 2], 3: [1, 2]}, [0]
    os.makedirs(args.out, exist_ok=True)
    results = os.path.join(args.out, "results.jsonl")
    t0, cache, groups, rows = time.perf_counter(), {}, {}, []
    for dims in args.dims:
        setup, ft_args = setups(args.quick)[dims]
        config = tr.pretrain_config(setup, os.path.join(args.out, f"pretrain{dims}d"))
        rows += tr.run_task(config, k=ks[dims], seeds=args.seeds, augments=args.augments,
                            curve_augment=args.curve_augment, finetune_args=ft_args,
                            results=results, budgets=budgets[dims], pretrain=args.pretrain,
                            cache=cache, log=log)
        for a in dict.fromkeys([args.curve_augment, *args.augments]):
            gains = tr.gain_rows(rows, dims, ks[dims], a)
            if gains:
                groups[f"{dims}D, k = {ks[dims]}, {a}"] = gains
    text = report(args, argv, groups, rows, time.perf_counter() - t0)
    report_path = args.report or os.path.join(args.out, "report.md")
    plot_path = args.plot or os.path.join(args.out, "transfer.png")
    with open(report_path, "w") as f:
        f.write(text)
    curves = {t: g for t, g in groups.items() if t.endswith(args.curve_augment)}
    tr.plot_gains(curves, plot_path)
    print(text)
    log(f"report: {report_path}; plot: {plot_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
