"""Does pre-training transfer? Budget checkpoints of one pre-training run, and the paired
comparison of pre-trained and scratch fine-tuning at each budget.

One run per dimension serves every budget: the learning rate is constant after a linear
warm-up (``schedule="constant"``), so the checkpoint at step b is exactly the model a run of b
steps would have produced (the data stream is a pure function of (seed, index), and resuming is
exact). `pretrain_budgets` trains segment by segment up to each budget and keeps a copy of the
checkpoint there; a rerun skips the budgets already saved.
"""

from __future__ import annotations

import os
import shutil
import time

from .config import PretrainConfig

BUDGET_DIR = "budgets"


def budget_path(out: str, step: int) -> str:
    return os.path.join(out, BUDGET_DIR, f"step_{step:07d}.pt")


def pretrain_budgets(config: PretrainConfig, budgets, *, quiet: bool = True,
                     log=None) -> dict[int, str]:
    """Train `config` (constant schedule) and save a checkpoint at every step in `budgets`;
    {step: checkpoint path}. Resumes from the run folder when it already holds a run."""
    if config.schedule != "constant":
        raise ValueError("budget checkpoints need schedule='constant' (under cosine a shorter "
                         "run is not a prefix of a longer one)")
    budgets = sorted({int(b) for b in budgets})
    if not budgets or budgets[0] < 1:
        raise ValueError(f"budgets must be positive step counts, got {budgets}")
    from .trainer import train
    out = config.out
    last = os.path.join(out, "checkpoints", "last.pt")
    paths = {}
    for b in budgets:
        target = budget_path(out, b)
        if os.path.exists(target):
            paths[b] = target
            continue
        t0 = time.perf_counter()
        resume = os.path.exists(last)
        train(config.replace(steps=b, ckpt_every=b), resume=True if resume else None,
              overwrite=not resume, quiet=quiet, record=False)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(last, target + ".tmp")
        os.replace(target + ".tmp", target)
        paths[b] = target
        if log:
            log(f"pre-training reached step {b} ({b * config.batch} samples) in "
                f"{time.perf_counter() - t0:.0f} s: {target}")
    return paths


# ---- the pre-training setups of the experiment ----------------------------------------------

# 2D: the backbone and synthesis of docs/finetune.md (96^2, K = 12, UNet 16-32-64-128 with 2
# residual units, batch 16, lr 1e-3 after 100 warm-up steps), with a constant schedule.
SETUP_2D = dict(shape=(96, 96), num_labels=12, batch=16, model="unet",
                model_kwargs={"channels": [16, 32, 64, 128], "strides": [2, 2, 2],
                              "num_res_units": 2},
                embed_dim=32, lr=1e-3, warmup_steps=100, schedule="constant", device="cpu",
                log_every=100)


# 3D: 24^3 patches (2 mm voxels: the fine-tuning patch), K = 8 as the published 3D setup, a
# small UNet 8-16-32-64 with 1 residual unit, batch 4, lr 1e-3 after 25 warm-up steps. The
# size and width are what two shared CPU cores allow, not a recommendation.
SETUP_3D = dict(shape=(24, 24, 24), num_labels=8, batch=4, model="unet",
                model_kwargs={"channels": [8, 16, 32, 64], "strides": [2, 2, 2],
                              "num_res_units": 1},
                embed_dim=32, lr=1e-3, warmup_steps=25, schedule="constant", device="cpu",
                log_every=50)


# Tiny versions of both, for smoke tests (seconds on a CPU).
_TINY_UNET = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}
QUICK_2D = dict(SETUP_2D, shape=(32, 32), num_labels=4, batch=2, warmup_steps=1,
                model_kwargs=_TINY_UNET, embed_dim=8)
QUICK_3D = dict(SETUP_3D, shape=(16, 16, 16), num_labels=4, batch=1, warmup_steps=1,
                model_kwargs=_TINY_UNET, embed_dim=8)


def pretrain_config(setup: dict, out: str, **changes) -> PretrainConfig:
    from .config import build
    return build(dict(setup, out=out), changes)


def pretrain_for(config: PretrainConfig, seconds: float, *, n_budgets: int = 5,
                 probe_steps: int = 20, log=None) -> dict[int, str]:
    """Pre-train for about `seconds` with `n_budgets` budget checkpoints spaced by 2x (the
    largest is 2^(n-1) times the smallest). Two segments of `probe_steps` come first: the
    first absorbs one-off costs (kernel compilation, allocator warm-up), the second measures
    the speed from which the largest budget is sized."""
    t_start = time.perf_counter()
    pretrain_budgets(config, [probe_steps], log=log)
    t0 = time.perf_counter()
    pretrain_budgets(config, [2 * probe_steps], log=log)
    per_step = (time.perf_counter() - t0) / probe_steps
    left = seconds - (time.perf_counter() - t_start)
    largest = max(2 * probe_steps + int(left / per_step), 2 * probe_steps * 2 ** (n_budgets - 1))
    budgets = sorted({max(2 * probe_steps, round(largest / 2 ** i)) for i in range(n_budgets)})
    if log:
        log(f"{per_step * 1e3:.1f} ms per step of {config.batch} samples: budgets {budgets} "
            "steps")
    return pretrain_budgets(config, budgets, log=log)


# ---- fine-tuning jobs -------------------------------------------------------------------------

# Fine-tuning budgets of the two tasks (identical for scratch and pre-trained).
FINETUNE_2D = dict(steps=200, batch=8, lr=1e-3, warmup_steps=20)
FINETUNE_3D = dict(steps=100, batch=2, lr=1e-3, warmup_steps=10)
FINETUNE_QUICK = dict(steps=2, batch=2, lr=1e-3, warmup_steps=1)


def task(dims: int, k: int, size: int, cache: dict | None = None):
    """The MNI152 tissue task: 2D slices of `size`^2, or 3D patches of `size`^3 (2 mm
    voxels). `cache` keeps the template between calls."""
    from . import finetune as ft
    from . import mni_tissue as mt
    from . import mni_tissue3d as m3
    cache = cache if cache is not None else {}
    if "volumes" not in cache:
        cache["volumes"] = mt.load_template(1)
    if dims == 2:
        if ("slices", size) not in cache:
            cache[("slices", size)] = mt.build(size, volumes=cache["volumes"])
        return ft.mni_task(k, slices=cache[("slices", size)])
    if "volume" not in cache:
        cache["volume"] = m3.build(volumes=cache["volumes"])
    return ft.mni3d_task(k, patch=size, volume=cache["volume"])


def job_key(row: dict) -> tuple:
    return (row["dims"], row["k"], row["budget"], row["augment"], row["seed"])


def run_job(data, checkpoint: str | None, spec, *, dims: int, k: int, budget: int,
            samples: int, augment: str, seed: int, finetune_args: dict) -> dict:
    """One fine-tuning run; budget 0 means scratch (the architecture of `spec`)."""
    from . import finetune as ft
    state = ft.read_weights(checkpoint)[1] if budget else None
    config = ft.FinetuneConfig(seed=seed, augment=augment, **finetune_args)
    r = ft.finetune(data, spec, config, state=state)
    row = {"dims": dims, "k": k, "budget": budget, "samples": samples, "augment": augment,
           "seed": seed, **r.to_dict()}
    row.pop("losses")
    row.pop("meta")
    return row


def read_rows(path: str) -> list[dict]:
    import json
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def append_row(path: str, row: dict) -> None:
    import json
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


# ---- summaries ---------------------------------------------------------------------------------

def _mean_std(values) -> tuple[float, float]:
    n = len(values)
    m = sum(values) / n
    s = (sum((v - m) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return m, s


def gain_rows(rows: list[dict], dims: int, k: int, augment: str) -> list[dict]:
    """Per budget: pre-trained and scratch mean Dice (mean, std over seeds), the gain
    (pre-trained minus scratch, paired by seed: mean, std) and the paired wins."""
    pick = [r for r in rows if r["dims"] == dims and r["k"] == k and r["augment"] == augment]
    scratch = {r["seed"]: r["mean_dice"] for r in pick if r["budget"] == 0}
    out = []
    for b in sorted({r["budget"] for r in pick if r["budget"]}):
        pre = {r["seed"]: (r["mean_dice"], r["samples"]) for r in pick if r["budget"] == b}
        seeds = sorted(set(pre) & set(scratch))
        if not seeds:
            continue
        gains = [pre[s][0] - scratch[s] for s in seeds]
        out.append({"dims": dims, "k": k, "augment": augment, "budget": b,
                    "samples": pre[seeds[0]][1], "seeds": seeds,
                    "pretrained": _mean_std([pre[s][0] for s in seeds]),
                    "scratch": _mean_std([scratch[s] for s in seeds]),
                    "gain": _mean_std(gains), "gains": gains,
                    "wins": sum(g > 0 for g in gains)})
    return out


def gain_table(rows: list[dict]) -> str:
    """Markdown table of `gain_rows` output (possibly of several tasks)."""
    lines = ["| task | k | augmentation | pre-training steps | synthetic samples | scratch | "
             "pre-trained | gain (paired) | pre-trained wins |",
             "|---|---|---|---|---|---|---|---|---|"]
    for g in rows:
        lines.append(
            f"| {g['dims']}D | {g['k']} | {g['augment']} | {g['budget']} | {g['samples']} | "
            f"{g['scratch'][0]:.4f} ± {g['scratch'][1]:.4f} | "
            f"{g['pretrained'][0]:.4f} ± {g['pretrained'][1]:.4f} | "
            f"{g['gain'][0]:+.4f} ± {g['gain'][1]:.4f} | {g['wins']}/{len(g['seeds'])} |")
    return "\n".join(lines)


def plot_gains(groups: dict[str, list[dict]], path: str) -> None:
    """Gain against synthetic samples (log scale), one panel per task: every seed as a dot,
    the mean with its standard deviation as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.2), squeeze=False)
    for ax, (title, gains) in zip(axes[0], groups.items()):
        if gains:
            xs = [g["samples"] for g in gains]
            ax.errorbar(xs, [g["gain"][0] for g in gains], yerr=[g["gain"][1] for g in gains],
                        marker="o", capsize=4, label="mean ± std over seeds")
            for g in gains:
                ax.scatter([g["samples"]] * len(g["gains"]), g["gains"], color="C1", s=12,
                           alpha=0.7, label="one seed" if g is gains[0] else None)
            ax.set_xscale("log", base=2)
            ax.legend()
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xlabel("synthetic samples seen in pre-training")
        ax.set_ylabel("mean Dice, pre-trained minus scratch")
        ax.set_title(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- one task end to end -------------------------------------------------------------------

def spec_of(config: PretrainConfig):
    """The fine-tuning ModelSpec of a pre-training config (what its checkpoints rebuild)."""
    from .finetune import ModelSpec
    return ModelSpec(model=config.model, model_kwargs=dict(config.model_kwargs),
                     embed_dim=config.embed_dim, in_channels=config.in_channels,
                     spatial_dims=config.spatial_dims, pretrain_shape=tuple(config.shape))


def plan_jobs(budgets, *, seeds, augments, curve_augment) -> list[tuple[int, str, int]]:
    """(budget, augment, seed) of every fine-tuning run, scratch (budget 0) first: scratch
    and the largest budget under every augmentation, the other budgets under
    `curve_augment`."""
    budgets = sorted(budgets)
    jobs = [(0, a, s) for a in augments for s in seeds]
    if budgets:
        jobs += [(budgets[-1], a, s) for a in augments for s in seeds]
        jobs += [(b, curve_augment, s) for b in reversed(budgets[:-1]) for s in seeds]
    return list(dict.fromkeys(jobs))


def run_task(config: PretrainConfig, *, k: int, seeds, augments, curve_augment: str,
             finetune_args: dict, results: str, budgets=None, seconds: float | None = None,
             pretrain: bool = True, cache: dict | None = None, log=None,
             n_budgets: int = 5, probe_steps: int = 20) -> list[dict]:
    """Pre-train `config` to its budgets (`budgets` steps, or as many as `seconds` allow;
    pretrain=False: use the budget checkpoints already saved), then fine-tune scratch and
    every budget on the MNI152 task of the same dimension (n_budgets, probe_steps: see
    `pretrain_for`); rows appended to `results`
    (JSON lines; runs already there are skipped). Returns this task's rows."""
    if pretrain:
        paths = (pretrain_for(config, seconds, n_budgets=n_budgets, probe_steps=probe_steps,
                              log=log) if seconds is not None
                 else pretrain_budgets(config, budgets, log=log))
    else:
        paths = {b: budget_path(config.out, b) for b in budgets
                 if os.path.exists(budget_path(config.out, b))}
    dims = config.spatial_dims
    data = task(dims, k, config.shape[0], cache)
    spec = spec_of(config)
    done = {job_key(r) for r in read_rows(results)}
    planned = budgets if budgets is not None else list(paths)
    for budget, augment, seed in plan_jobs(planned, seeds=seeds, augments=augments,
                                           curve_augment=curve_augment):
        if (dims, k, budget, augment, seed) in done:
            continue
        if budget and budget not in paths:
            if log:
                log(f"{dims}D: no checkpoint at step {budget} yet; its runs are left out")
            continue
        t0 = time.perf_counter()
        row = run_job(data, paths.get(budget), spec, dims=dims, k=k, budget=budget,
                      samples=budget * config.batch, augment=augment, seed=seed,
                      finetune_args=finetune_args)
        append_row(results, row)
        if log:
            log(f"{dims}D k={k} {'scratch' if not budget else f'step {budget}':>10s} "
                f"{augment:10s} seed {seed}: mean Dice {row['mean_dice']:.4f} "
                f"({time.perf_counter() - t0:.0f} s)")
    return [r for r in read_rows(results) if r["dims"] == dims and r["k"] == k]
