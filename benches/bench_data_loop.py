"""Synthesis inside a MONAI training step: how much of the step waits for data.

Three ways to feed a MONAI UNet with DiceCELoss from SyntheticDataset (the same samples in
each): in the main process, from 2 DataLoader workers, and from MONAI's ThreadDataLoader.
For each, the median step time and the time the loop waited for its batch (in the main
process that is the synthesis itself). Also one batch of B against B single-sample calls,
the cost of a per-sample (map-style) Dataset.

    PYTHONPATH=python:. python benches/bench_data_loop.py --shape 64 64 64 --batch 4 --steps 12
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader

import rasd_kernels as rk
from rasd_kernels.data import SyntheticDataset


def make_step(shape, labels: int):
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    net = UNet(spatial_dims=len(shape), in_channels=1, out_channels=labels,
               channels=(16, 32, 64), strides=(2, 2), num_res_units=1)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)

    def step(batch):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(batch["image"]), batch["label"])
        loss.backward()
        opt.step()
        return float(loss)

    return step


def loaders(dataset):
    from monai.data import ThreadDataLoader
    from monai.data.utils import no_collation

    return {
        "main process": dataset,
        "2 DataLoader workers": DataLoader(dataset, batch_size=None, num_workers=2,
                                           persistent_workers=False),
        "MONAI ThreadDataLoader": ThreadDataLoader(dataset, batch_size=None,
                                                   collate_fn=no_collation),
    }


def time_loop(loader, step, warmup: int) -> tuple[float, float]:
    """Median (step seconds, seconds waiting for the batch) after `warmup` steps."""
    steps, waits = [], []
    it = iter(loader)
    t0 = time.perf_counter()
    for i, batch in enumerate(it):
        t1 = time.perf_counter()
        step(batch)
        t2 = time.perf_counter()
        if i >= warmup:
            steps.append(t2 - t0)
            waits.append(t1 - t0)
        t0 = t2
    return statistics.median(steps), statistics.median(waits)


def per_sample_cost(shape, labels: int, batch: int, repeats: int) -> tuple[float, float]:
    """Median seconds of one batched call and of `batch` single-sample calls."""
    batched, single = [], []
    for r in range(repeats):
        t0 = time.perf_counter()
        rk.synthesize(batch, shape, labels, seed=1, start_index=r * batch)
        t1 = time.perf_counter()
        for b in range(batch):
            rk.synthesize(1, shape, labels, seed=1, start_index=r * batch + b)
        t2 = time.perf_counter()
        batched.append(t1 - t0)
        single.append(t2 - t1)
    return statistics.median(batched), statistics.median(single)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", type=int, nargs="+", default=[64, 64, 64])
    p.add_argument("--labels", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args(argv)
    shape = tuple(args.shape)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, shape {shape}, "
          f"K {args.labels}, batch {args.batch}, {args.steps} steps ({args.warmup} untimed)")
    dataset = SyntheticDataset(args.batch, shape, args.labels, seed=0,
                               steps=args.steps + args.warmup)
    print("| feed | step ms | waiting for data ms | share of the step |")
    print("| --- | ---: | ---: | ---: |")
    for name, loader in loaders(dataset).items():
        step = make_step(shape, args.labels)
        total, wait = time_loop(loader, step, args.warmup)
        print(f"| {name} | {1e3 * total:.0f} | {1e3 * wait:.1f} | {100 * wait / total:.1f} % |")
    one, single = per_sample_cost(shape, args.labels, args.batch, repeats=5)
    print(f"\nsynthesis of {args.batch} samples: one batched call {1e3 * one:.1f} ms, "
          f"{args.batch} single-sample calls {1e3 * single:.1f} ms ({single / one:.2f}x)")


if __name__ == "__main__":
    main()
