"""Quick timing of the CPU backend: full synthesis of the presets and each stage.

    python benches/bench_cpu_quick.py [--repeats 7] [--threads N]

Prints median samples/s of rasd_kernels.synthesize(..., backend="cpu") for rasd3d
(128^3, K=8, batch 4) and rasd2d (512^2, K=16, batch 16), and the median time of each stage
(labels: anatomy and gmm_shapes; images: appearance parameters and the appearance op, as
rasd_kernels.stages runs them) as a fraction of the whole.

On a shared machine the wall clock measures the neighbours too, so the CPU time of this
process is reported as well: "cpu-bound" samples/s = batch * threads / CPU seconds, what the
threads would deliver with the cores to themselves (spin-waiting counts against it).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import rasd_kernels
from rasd_kernels import params
from rasd_kernels.backends import cpu


PRESETS = {"rasd3d": 4, "rasd2d": 16}


def _median_time(fn, repeats: int, clock=time.perf_counter) -> float:
    fn()  # warm-up: workspaces, page faults
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times)


def bench(name: str, batch: int, repeats: int) -> None:
    shape, K, config = rasd_kernels.preset(name)
    image = torch.empty(batch, config.channels, *shape)
    label = torch.empty(batch, *shape, dtype=torch.uint8)
    run = lambda: rasd_kernels.synthesize_into(  # noqa: E731
        image, label, num_labels=K, seed=1, start_index=0, config=config, backend="cpu")
    total = _median_time(run, repeats)
    cpu_total = _median_time(run, repeats, time.process_time)
    ws = params.make_workspace(batch, shape, K, config.channels, config, "cpu")
    torch.arange(batch, out=ws.sample_index)
    stages = {
        "labels": lambda: rasd_kernels.stages.draw_labels(ws, label, config, 1, "cpu"),
        "images": lambda: rasd_kernels.stages.draw_images(ws, image, label, config, 1, "cpu"),
    }
    times = {k: _median_time(f, repeats, time.process_time) for k, f in stages.items()}
    parts = ", ".join(f"{k} {1e3 * t:.1f} ms ({100 * t / sum(times.values()):.0f}%)"
                      for k, t in times.items())
    threads = cpu.get_num_threads()
    print(f"{name}: batch {batch}, {threads} threads: {batch / total:.1f} samples/s wall "
          f"({1e3 * total:.1f} ms per batch), {batch * threads / cpu_total:.1f} samples/s "
          f"cpu-bound ({1e3 * cpu_total:.1f} CPU ms per batch); CPU time per stage: {parts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--preset", choices=sorted(PRESETS), action="append")
    args = parser.parse_args()
    if args.threads:
        cpu.set_num_threads(args.threads)
    for name in args.preset or sorted(PRESETS, reverse=True):
        bench(name, PRESETS[name], args.repeats)


if __name__ == "__main__":
    main()
