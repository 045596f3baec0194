"""The training loop: synthesise on the device, embed, RaSD loss, AdamW; log, checkpoint, export.

Launch with one process, or with torchrun for data parallelism (DDP; gloo on the CPU, nccl on
CUDA). Rank 0 writes the run folder:

    OUT/config.yaml               the resolved configuration
    OUT/log.csv                   one row per step (loss terms, lr, synthesis / model time)
    OUT/checkpoints/last.pt       model, optimiser, step, config
    OUT/export/                   encoder weights for MONAI (see rasd_pretrain.export)
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from . import checkpoint as ckpt
from .config import PretrainConfig, dump_yaml
from .data import SyntheticBatches, local_batch
from .export import export
from .loss import consistency_loss, rasd_loss
from .models import build_model, check_output

LOG_FIELDS = ("step", "loss", "segmentation", "decoupling", "consistency", "lr", "synth_ms",
              "model_ms", "samples_per_s", "elapsed_s")
RUN_ENTRIES = ("config.yaml", "log.csv", "checkpoints", "export")


@dataclass
class RunResult:
    """What a run did: its folder, checkpoint, steps, exports and (record=True) its log."""

    out: str
    checkpoint: str
    start_step: int
    end_step: int
    rank: int = 0
    world_size: int = 1
    exports: dict = field(default_factory=dict)
    history: list = field(default_factory=list)     # one dict per step run here (record=True)
    indices: list = field(default_factory=list)     # global sample indices this rank drew


# ---- process group and device ----------------------------------------------------------

def _distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the torchrun environment; (0, 1, 0) without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but CUDA is not available here")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_seed(seed: int, step: int, rank: int) -> int:
    """The torch generator seed of one step on one rank (dropout etc. replay on resume)."""
    return (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + rank * 0x94D049BB133111EB
            ) % (1 << 63)


# ---- the run folder --------------------------------------------------------------------

def _out_problem(out: str, *, resume: bool, overwrite: bool) -> str | None:
    """Why the run folder cannot be used, checked without writing anything (None if fine)."""
    if os.path.exists(out):
        if not os.path.isdir(out):
            return f"output path {out} exists and is not a folder"
        if not os.access(out, os.W_OK):
            return f"the output folder {out} is not writable"
        existing = [e for e in RUN_ENTRIES if os.path.exists(os.path.join(out, e))]
        if existing and not resume and not overwrite:
            return (f"{out} already holds a run ({', '.join(existing)}); pass --resume to "
                    "continue it, --overwrite to replace it, or choose another --out")
        return None
    parent = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        return f"cannot create the output folder {out}: {parent} is not a writable folder"
    return None


def _prepare_out(out: str, *, resume: bool, overwrite: bool) -> str | None:
    """Create the run folder (clearing an old run when overwriting); an error message instead
    of raising, so that every rank can raise it."""
    problem = _out_problem(out, resume=resume, overwrite=overwrite)
    if problem:
        return problem
    try:
        os.makedirs(out, exist_ok=True)
        ckpt.check_writable(out)
        if not resume:
            for e in RUN_ENTRIES:
                path = os.path.join(out, e)
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif os.path.exists(path):
                    os.remove(path)
        os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)
    except OSError as exc:
        return f"cannot write to the output folder {out}: {exc.strerror}"
    return None


def _agree(message: str | None, world: int) -> None:
    """Raise the same error on every rank when rank 0 found one."""
    if world > 1:
        box = [message]
        dist.broadcast_object_list(box, src=0)
        message = box[0]
    if message:
        raise ValueError(message)


def _open_log(path: str, start_step: int):
    """CSV log; on resume, rows past the checkpoint (a crashed tail) are dropped."""
    rows = []
    if start_step > 0 and os.path.exists(path):
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start_step]
    f = open(path, "w", newline="")
    writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    f.flush()
    return f, writer


# ---- the loop ----------------------------------------------------------------------------

def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _check_model(model: nn.Module, config: PretrainConfig, device: torch.device) -> None:
    """One training-mode forward pass of zeros (no grad) to check the [B, E, *S] contract and
    that the model runs at this size; buffers (norm statistics) are restored afterwards."""
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    was_training = model.training
    model.train()
    try:
        with torch.no_grad():
            x = torch.zeros(2, config.in_channels, *config.shape, device=device)
            check_output(model(x), 2, config.embed_dim, config.shape)
    except ValueError as exc:
        if "must map" in str(exc):
            raise
        raise ValueError(f"the model cannot run on input [B, {config.in_channels}, "
                         f"{', '.join(map(str, config.shape))}]: {exc}") from None
    except Exception as exc:   # the model's own shape errors, whatever their type
        raise ValueError(f"the model cannot run on input [B, {config.in_channels}, "
                         f"{', '.join(map(str, config.shape))}]: {exc}") from None
    finally:
        model.train(was_training)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])


def _loss(model, batches: SyntheticBatches, label, config: PretrainConfig):
    x = batches.views_as_batch()
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=config.amp == "bf16"):
        emb = model(x)
    check_output(emb, x.shape[0], config.embed_dim, config.shape)
    V, L = config.views, batches.local_batch
    labels = label if V == 1 else label.repeat(V, *([1] * config.spatial_dims))
    terms = rasd_loss(emb, labels, config.num_labels, tau=config.tau, eps=config.eps,
                      normalize=config.normalize)
    total, cons = terms.total, torch.zeros((), device=emb.device)
    if V > 1:
        cons = sum(consistency_loss(emb[:L], emb[v * L:(v + 1) * L], config.consistency)
                   for v in range(1, V)) / (V - 1)
        total = total + config.consistency_weight * cons
    return total, torch.stack([total.detach(), terms.segmentation.detach(),
                               terms.decoupling.detach(), cons.detach()])


def train(config: PretrainConfig, *, model: nn.Module | None = None, resume=None,
          overwrite: bool = False, quiet: bool = False, progress: bool | None = None,
          record: bool = True, stop_at: int | None = None) -> RunResult:
    """Run (or resume) pre-training; returns where the checkpoint is and the per-step log.

    stop_at: end this run after that step (checkpoint and export written), leaving the
    schedule as `config.steps` sets it; a later resume continues to `config.steps`.
    SIGINT (Ctrl-C) or SIGTERM in the main thread stop the run the same way after the step in
    progress, then raise KeyboardInterrupt; a second signal interrupts at once.

    model: a module to train instead of `config.model` (same [B, C, *S] -> [B, E, *S]
    contract). resume: None, True (OUT/checkpoints/last.pt) or a checkpoint path.
    overwrite: replace a run already in config.out. quiet: print nothing. progress: tqdm bar
    (default: when stderr is a terminal). record: keep every step's log row and sample
    indices in the result (the CLI turns it off; OUT/log.csv has the rows anyway).
    """
    rank, world, local_rank = _distributed()
    owns_group = world > 1 and not dist.is_initialized()
    if owns_group:
        device = _device(config.device, local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        with _stop_on_signal() as stop:
            return _train(config, model, resume, overwrite, quiet, progress, record, rank,
                          world, local_rank, stop_at, stop)
    finally:
        if owns_group:
            dist.destroy_process_group()


@contextmanager
def _stop_on_signal():
    """A flag set by the first SIGINT or SIGTERM (the handlers are restored afterwards), so
    that a step is never cut in half; outside the main thread signals are left alone."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


class Stopped(KeyboardInterrupt):
    """The orderly stop: a signal asked for it, and the step it ended after is saved."""


def _step(model, optimizer, batches: SyntheticBatches, config: PretrainConfig, step: int,
          rank: int, world: int, device: torch.device,
          stop: threading.Event) -> tuple[dict, bool]:
    """One optimisation step on freshly synthesised data; its log row (without elapsed_s) and
    whether any rank was asked to stop (ranks must stop after the same step)."""
    lr = config.lr_at(step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    torch.manual_seed(_step_seed(config.seed, step, rank))

    t0 = time.perf_counter()
    _, label = batches.draw(step)
    _sync(device)
    t1 = time.perf_counter()
    total, terms = _loss(model, batches, label, config)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    if world > 1:
        # The stop request rides on the loss terms' all-reduce: one collective per step.
        shared = torch.cat([terms, torch.tensor([float(stop.is_set())], device=terms.device)])
        dist.all_reduce(shared)
        shared /= world
        *values, anyone = shared.tolist()      # synchronises the device
        stopping = anyone > 0
    else:
        values, stopping = terms.tolist(), stop.is_set()
    t2 = time.perf_counter()
    row = dict(zip(LOG_FIELDS, (step + 1, *values, lr, 1e3 * (t1 - t0), 1e3 * (t2 - t1),
                                config.batch / (t2 - t0), 0.0)))
    return row, stopping


def _train(config, model, resume, overwrite, quiet, progress, record, rank, world,
           local_rank, stop_at, stop):
    device = _device(config.device, local_rank)
    lead = rank == 0
    out = config.out
    last = os.path.join(out, "checkpoints", "last.pt")
    resume_path = last if resume is True else (resume or None)

    # Everything that can be refused is checked before the run folder is touched.
    local_batch(config.batch, world)
    _agree(_out_problem(out, resume=bool(resume_path), overwrite=overwrite) if lead else None,
           world)
    payload = None
    if resume_path:
        payload = ckpt.load(resume_path, map_location=device)
        ckpt.check_compatible(payload, config, resume_path)
    torch.manual_seed(config.seed)      # model initialisation only; data uses Philox
    if model is None:
        model = build_model(config.model, spatial_dims=config.spatial_dims,
                            in_channels=config.in_channels, out_channels=config.embed_dim,
                            shape=config.shape, **config.model_kwargs)
    model.to(device)
    _check_model(model, config, device)
    _agree(_prepare_out(out, resume=payload is not None, overwrite=overwrite) if lead else None,
           world)

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas,
                                  weight_decay=config.weight_decay)
    start = 0
    if payload is not None:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        start = payload["step"]
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    model.train()

    batches = SyntheticBatches(shape=config.shape, num_labels=config.num_labels,
                               global_batch=config.batch, rank=rank, world_size=world,
                               views=config.views, config=config.synthesis_config(),
                               seed=config.seed, backend=config.backend, device=device)
    result = RunResult(out=out, checkpoint=last, start_step=start, end_step=start, rank=rank,
                       world_size=world)
    end = config.steps if stop_at is None else min(config.steps, int(stop_at))
    if start >= end:
        if lead and not quiet and start < config.steps:
            print(f"{resume_path} is already at step {start} >= --stop-at {stop_at}; "
                  "nothing to do")
        elif lead and not quiet:
            print(f"{resume_path} is already at step {start} >= steps {config.steps}; "
                  "nothing to do (raise --steps to train further)")
        return result

    log_file = writer = bar = None
    if lead:
        dump_yaml(config, os.path.join(out, "config.yaml"))
        log_file, writer = _open_log(os.path.join(out, "log.csv"), start)
        show = (sys.stderr.isatty() if progress is None else progress) and not quiet
        if show:
            from ._deps import require
            bar = require("tqdm").tqdm(total=config.steps, initial=start, unit="step",
                                       dynamic_ncols=True, desc="rasd-pretrain")
        elif not quiet:
            print(f"training {end - start} steps from step {start} on {device} "
                  f"({world} rank{'s' if world > 1 else ''}); log: {out}/log.csv")
    t_start = time.perf_counter()
    interrupted = False
    try:
        for step in range(start, end):
            row, interrupted = _step(model, optimizer, batches, config, step, rank, world,
                                     device, stop)
            row["elapsed_s"] = time.perf_counter() - t_start
            if record:
                result.indices.extend(batches.indices(step))
                result.history.append(row)
            result.end_step = step + 1
            if lead:
                writer.writerow(row)
                log_file.flush()
                _report(bar, row, config, quiet)
                if ((step + 1) % config.ckpt_every == 0 or step + 1 == end
                        or interrupted):
                    ckpt.save(last, model_state=_unwrap(model).state_dict(),
                              optimizer_state=optimizer.state_dict(), step=step + 1,
                              config=config, world_size=world)
            if interrupted:
                break
    finally:
        if bar is not None:
            bar.close()
        if log_file is not None:
            log_file.close()

    if lead:
        result.exports = export(_unwrap(model).state_dict(), config.to_dict(), result.end_step,
                                os.path.join(out, "export"))
        if not quiet:
            if result.end_step < config.steps:
                why = "interrupted" if interrupted else f"--stop-at {stop_at}"
                print(f"stopped at step {result.end_step} of {config.steps} ({why}); "
                      "continue with --resume")
            print(f"checkpoint: {last} (step {result.end_step})")
            if "encoder" in result.exports:
                print(f"encoder for MONAI SwinUNETR: {result.exports['encoder']}")
            else:
                print(f"network weights: {result.exports['network']}")
    if world > 1:
        dist.barrier()
    if interrupted and result.end_step < end:
        raise Stopped(f"stopped at step {result.end_step}")
    return result


def _report(bar, row, config: PretrainConfig, quiet: bool) -> None:
    if bar is not None:
        bar.set_postfix(loss=f"{row['loss']:.4f}", seg=f"{row['segmentation']:.4f}",
                        dec=f"{row['decoupling']:.4f}", synth_ms=f"{row['synth_ms']:.0f}",
                        model_ms=f"{row['model_ms']:.0f}", sps=f"{row['samples_per_s']:.1f}",
                        refresh=False)
        bar.update(1)
    elif not quiet and (row["step"] % config.log_every == 0 or row["step"] == config.steps):
        print(f"step {row['step']}/{config.steps}  loss {row['loss']:.4f} "
              f"(seg {row['segmentation']:.4f}, dec {row['decoupling']:.4f}, "
              f"cons {row['consistency']:.4f})  synth {row['synth_ms']:.0f} ms  "
              f"model {row['model_ms']:.0f} ms  {row['samples_per_s']:.1f} samples/s",
              flush=True)
