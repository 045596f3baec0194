"""The MNI152 few-shot comparison again, with nnU-Net's own network, trainer and inference.

    python benches/nnunet_finetune_experiment.py --out runs/nnunet_mni        # ~1 h on 2 cores
    python benches/nnunet_finetune_experiment.py --out /tmp/q --quick         # smoke test

1. The MNI152 tissue task of docs/finetune.md (rasd_pretrain.mni_tissue, 96^2: the five band
   slices that k = 1, 2, 5 draw from and the 36 test slices) is written as an nnU-Net raw
   dataset; `nnUNetv2_plan_and_preprocess -c 2d` plans it (nnU-Net's default planner), and the
   plans' batch size is set to the MONAI protocol's 8. `splits_final.json` gives one fold per k:
   its k band slices for training, the test slices for validation.
2. `rasd-pretrain --nnunet-plans ... --nnunet-configuration 2d` pre-trains that network on
   synthetic data only (K = 12, AdamW lr 1e-3, cosine), or --weights reuses a file.
3. Every (k, seed, init) runs in a process of its own (its own nnUNet_results): nnU-Net's
   nnUNetTrainer, only shortened to --epochs x --iterations (nnU-Net's SGD, poly schedule,
   augmentation, deep supervision and loss unchanged), started by nnU-Net's
   `maybe_load_checkpoint` with the pre-trained file (pretrained) or without (scratch), then
   nnU-Net's `perform_actual_validation` predicts the test slices. Both inits build the network
   under the same seed and see the same batches (single-threaded augmentation, seeded).
4. Dice of each tissue pooled over every test pixel (as in docs/finetune.md) from the
   segmentations nnU-Net wrote; one Markdown table, OUT/results.jsonl (a rerun skips the runs
   already there).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
try:
    import rasd_pretrain  # noqa: F401
except ImportError:   # run from a source checkout without installing
    sys.path[:0] = [str(HERE.parent / p) for p in ("python", ".")]
sys.path.insert(0, str(HERE))

import numpy as np
import torch

DATASET_ID, DATASET = 501, "Dataset501_MNITissue"
KS = (1, 2, 5)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="work folder (nnU-Net's folders live inside)")
    p.add_argument("--weights", help="reuse this nnunet_pretrained.pth (skip step 2)")
    p.add_argument("--pretrain-steps", type=int, default=1000)
    p.add_argument("--pretrain-batch", type=int, default=8)
    p.add_argument("--ks", type=int, nargs="+", default=list(KS), choices=KS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--iterations", type=int, default=20, help="training iterations per epoch")
    p.add_argument("--batch", type=int, default=8, help="fine-tuning batch (set in the plans)")
    p.add_argument("--quick", action="store_true", help="tiny budgets, one k and one seed")
    return p


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def nnunet_env(out: Path, results: Path) -> dict:
    return {**os.environ, "nnUNet_raw": str(out / "raw"),
            "nnUNet_preprocessed": str(out / "preprocessed"), "nnUNet_results": str(results),
            "nnUNet_def_n_proc": "1", "nnUNet_compile": "false"}


def run(command: list[str], env: dict) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:3])} failed ({done.returncode}):\n"
                         f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


# ---- 1. the task as an nnU-Net dataset -------------------------------------------------------

def write_dataset(out: Path, test_stride: int) -> dict[int, dict]:
    """Raw dataset of the band and test slices; returns {k: {"train": [...], "val": [...]}}."""
    import SimpleITK as sitk
    from rasd_pretrain import finetune as ft
    from rasd_pretrain import mni_tissue as mt

    raw = out / "raw" / DATASET
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    (raw / "labelsTr").mkdir(exist_ok=True)
    slices = mt.build(96)
    folds = {}
    for k in KS:
        task = ft.mni_task(k, slices=slices, test_stride=test_stride)
        folds[k] = {"train": [f"z{z:03d}" for z in task.meta["train_z"]],
                    "val": [f"z{z:03d}" for z in task.meta["test_z"]]}
    cases = sorted({c for f in folds.values() for c in f["train"] + f["val"]})
    image, label = slices.at([int(c[1:]) for c in cases])
    for i, case in enumerate(cases):
        sitk.WriteImage(sitk.GetImageFromArray(image[i, 0].numpy()),
                        str(raw / "imagesTr" / f"{case}_0000.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(label[i].numpy().astype(np.uint8)),
                        str(raw / "labelsTr" / f"{case}.nii.gz"))
    (raw / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "T1"}, "labels": {c: i for i, c in enumerate(mt.CLASSES)},
         "numTraining": len(cases), "file_ending": ".nii.gz"}, indent=1))
    return folds


def plan(out: Path, folds: dict[int, dict], batch: int) -> Path:
    """nnU-Net plans and preprocesses the 2d configuration; one split per k; returns the plans."""
    env = nnunet_env(out, out / "results")
    run([str(Path(sys.executable).parent / "nnUNetv2_plan_and_preprocess"),
         "-d", str(DATASET_ID), "-c", "2d", "-np", "1", "-npfp", "1"], env)
    pre = out / "preprocessed" / DATASET
    plans_path = pre / "nnUNetPlans.json"
    plans = json.loads(plans_path.read_text())
    plans["configurations"]["2d"]["batch_size"] = batch
    plans_path.write_text(json.dumps(plans, indent=1))
    (pre / "splits_final.json").write_text(json.dumps([folds[k] for k in KS], indent=1))
    return plans_path


# ---- 2. pre-training ---------------------------------------------------------------------------

def pretrain(out: Path, plans: Path, steps: int, batch: int) -> Path:
    from rasd_pretrain import cli, nnunet
    run = out / "pretrain"
    weights = run / "export" / nnunet.WEIGHTS_NAME
    exported = run / "export" / "export.json"
    if exported.exists() and json.loads(exported.read_text())["step"] == steps:
        return weights      # an interrupted run exports too: only a finished one is reused
    warmup = min(100, steps // 10)
    argv = ["--nnunet-plans", str(plans), "--nnunet-configuration", "2d", "--labels", "12",
            "--batch", str(batch), "--lr", "1e-3", "--warmup-steps", str(warmup),
            "--schedule", "cosine", "--steps", str(steps), "--seed", "0", "--out", str(run),
            "--quiet", "--ckpt-every", str(max(1, steps // 10))]
    if (run / "checkpoints" / "last.pt").exists():
        argv.append("--resume")
    start = time.perf_counter()
    if cli.main(argv) != 0:
        raise SystemExit("pre-training failed")
    log(f"pre-trained {steps} steps of batch {batch} in {time.perf_counter() - start:.0f} s")
    return weights


# ---- 3. one fine-tuning run (a process of its own) -------------------------------------------

def finetune_one(args: argparse.Namespace) -> None:
    """Runs inside a child whose environment points nnU-Net at this run's results folder."""
    from nnunetv2.run.run_training import maybe_load_checkpoint
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    class ShortTrainer(nnUNetTrainer):
        """nnU-Net's trainer with a schedule short enough for a CPU."""

        # nnU-Net records its trainers' __init__ arguments by name: keep its signature
        def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                     device: torch.device = torch.device("cpu")):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs, self.num_iterations_per_epoch = args.epochs, args.iterations
            self.num_val_iterations_per_epoch = 2

    pre = Path(os.environ["nnUNet_preprocessed"]) / DATASET
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False      # as nnU-Net's get_trainer_from_args passes it
    dataset_json = json.loads((pre / "dataset.json").read_text())
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    trainer = ShortTrainer(plans, "2d", KS.index(args.k), dataset_json, torch.device("cpu"))
    pretrained = args.init == "pretrained"
    maybe_load_checkpoint(trainer, False, False, args.weights if pretrained else None)
    if pretrained:
        check_loaded(trainer.network.state_dict(), args.weights)
    start = time.perf_counter()
    trainer.run_training()
    train_s = time.perf_counter() - start
    trainer.perform_actual_validation(False)
    (Path(trainer.output_folder) / "train_s.txt").write_text(f"{train_s:.1f}")


def check_loaded(network: dict, weights: str) -> None:
    """Every tensor of the file is in the network nnU-Net will train, before its first step."""
    from rasd_pretrain import nnunet
    saved = torch.load(weights, map_location="cpu", weights_only=True)["network_weights"]
    differ = [k for k, v in saved.items() if nnunet.HEAD_KEY not in k
              and not torch.equal(network[k].cpu(), v)]
    if differ or len(saved) < 10:
        raise SystemExit(f"nnU-Net did not load the pre-trained weights: {differ[:3]}")


def pooled_dice(out: Path, fold_dir: Path, cases: list[str]) -> list[float]:
    import SimpleITK as sitk
    from rasd_pretrain import finetune as ft
    from rasd_pretrain import mni_tissue as mt

    def read(path):
        return torch.from_numpy(sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.int64))

    pred = torch.stack([read(fold_dir / "validation" / f"{c}.nii.gz") for c in cases])
    truth = torch.stack([read(out / "raw" / DATASET / "labelsTr" / f"{c}.nii.gz")
                         for c in cases])
    return ft.dice_per_class(pred, truth, len(mt.CLASSES)).tolist()


def finetune_all(args, out: Path, weights: Path, folds: dict) -> list[dict]:
    from rasd_pretrain import finetune as ft
    from rasd_pretrain import mni_tissue as mt
    from rasd_pretrain.transfer import append_row, read_rows
    done_path = str(out / "results.jsonl")
    done = read_rows(done_path)
    for k in args.ks:
        for seed in args.seeds:
            for init in ("scratch", "pretrained"):
                if any(r["k"] == k and r["seed"] == seed and r["init"] == init for r in done):
                    continue
                results = out / "runs" / f"k{k}_s{seed}_{init}"
                run([sys.executable, __file__, "--out", str(out), "_finetune-one", str(k),
                     str(seed), init, str(weights), str(args.epochs), str(args.iterations)],
                    # no augmentation workers: seeded batches, the same for both inits
                    {**nnunet_env(out, results), "nnUNet_n_proc_DA": "0"})
                fold_dir = next(results.glob(f"{DATASET}/*/fold_{KS.index(k)}"))
                dice = pooled_dice(out, fold_dir, folds[k]["val"])
                row = {"k": k, "seed": seed, "init": init, "dice": dice,
                       "mean_dice": ft.foreground_mean(torch.tensor(dice)),
                       "classes": list(mt.CLASSES),
                       "train_s": float((fold_dir / "train_s.txt").read_text())}
                log(f"k={k} seed={seed} {init}: mean Dice {row['mean_dice']:.4f}")
                done.append(row)
                append_row(done_path, row)
    return [r for r in done if r["k"] in args.ks and r["seed"] in args.seeds]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "_finetune-one" in argv:     # the child of finetune_all
        i = argv.index("_finetune-one")
        k, seed, init, weights, epochs, iterations = argv[i + 1:i + 7]
        finetune_one(argparse.Namespace(k=int(k), seed=int(seed), init=init, weights=weights,
                                        epochs=int(epochs), iterations=int(iterations)))
        return 0
    args = parser().parse_args(argv)
    if args.quick:
        args.pretrain_steps, args.pretrain_batch = 2, 2
        args.ks, args.seeds, args.epochs, args.iterations = [1], [0], 1, 2
    out = Path(args.out).resolve()
    start = time.perf_counter()
    folds = write_dataset(out, test_stride=12 if args.quick else 2)
    plans = plan(out, folds, args.batch)
    log(f"nnU-Net planned {plans}")
    os.environ.update({k: v for k, v in nnunet_env(out, out / "results").items()
                       if k.startswith("nnUNet")})
    weights = Path(args.weights) if args.weights else pretrain(out, plans, args.pretrain_steps,
                                                               args.pretrain_batch)
    results = finetune_all(args, out, weights, folds)
    from finetune_experiment import table
    print(f"\nnnU-Net 2d, {args.epochs} x {args.iterations} iterations of batch {args.batch}, "
          f"pre-training {args.pretrain_steps} steps of batch {args.pretrain_batch}; "
          f"{time.perf_counter() - start:.0f} s\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
