"""How rasd-bench measures: check, warm up, time, summarise; the copy-bandwidth floor; the
environment record.

The protocol of one case (`run_case`): call it once and check the output (a wrong answer is
never timed), call it `warmup` more times, then time `repeats` calls. A call makes `batch`
samples; the rate is batch / seconds per call, summarised by its median and its 20th and 80th
percentiles. Slow cases get fewer repeats (never fewer than `min_repeats`) so that one case
takes about `budget_s` seconds.

On CUDA every call is bracketed by CUDA events and the device is synchronised before reading
them, so asynchronous launches are timed by the GPU clock, not by the host.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

VERSIONED = ("torch", "triton", "numpy", "monai", "torchio", "rasd_kernels")


class CorrectnessError(AssertionError):
    """A benchmarked output is wrong; the case is not timed."""


@dataclass
class Case:
    """One timed thing: `run()` makes `batch` samples of `stage` with `tool` on `device` and
    returns its output; `check(output)` raises CorrectnessError if the output is wrong and
    otherwise returns a short description of what it verified. `aliases` name other stages
    that the same computation also is (a chain that is both a tool's appearance and its full
    pipeline)."""

    tool: str
    stage: str
    batch: int
    device: torch.device
    run: Callable[[], Any]
    check: Callable[[Any], str]
    note: str = ""
    aliases: tuple[str, ...] = ()   # other stages this same measurement also reports


@dataclass
class Measurement:
    """Seconds per call of `repeats` timed calls, each making `batch` samples."""

    seconds: list[float]
    batch: int

    def rates(self) -> list[float]:
        return [self.batch / s for s in self.seconds]

    def samples_per_s(self) -> float:
        """Median rate over the timed calls."""
        return percentile(self.rates(), 50.0)

    def spread(self) -> dict[str, float]:
        rates = self.rates()
        return {"p20": percentile(rates, 20.0), "p80": percentile(rates, 80.0)}


@dataclass
class Result:
    case: Case
    measurement: Measurement
    check: str
    extra: dict = field(default_factory=dict)


def percentile(values, q: float) -> float:
    """Linear-interpolated percentile q in [0, 100] (numpy's default method)."""
    v = sorted(values)
    if not v:
        raise ValueError("percentile of no values")
    pos = (len(v) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(seconds, output) of one call, the device synchronised on both sides."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - start, out


def time_calls(fn: Callable[[], Any], device: torch.device, repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls: CUDA events on CUDA, perf_counter elsewhere."""
    device = torch.device(device)
    if device.type != "cuda":
        return [time_call(fn, device)[0] for _ in range(repeats)]
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(repeats)]
    torch.cuda.synchronize(device)
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize(device)
    return [start.elapsed_time(end) / 1e3 for start, end in events]


def measure(fn: Callable[[], Any], *, device, batch: int = 1, warmup: int = 1,
            repeats: int = 5, min_repeats: int = 2, budget_s: float | None = None,
            estimate_s: float | None = None) -> Measurement:
    """Warm `fn` up, then time it.

    `budget_s` lowers the repeats of slow calls (to no fewer than `min_repeats`), judging the
    cost of a call from the last warm-up call, or from `estimate_s` without warm-up.
    """
    device = torch.device(device)
    estimate = estimate_s
    for _ in range(warmup):
        estimate = time_call(fn, device)[0]
    count = repeats
    if budget_s is not None and estimate is not None and estimate > 0:
        count = max(min_repeats, min(repeats, int(budget_s / estimate)))
    return Measurement(time_calls(fn, device, max(1, count)), batch)


def run_case(case: Case, *, warmup: int = 1, repeats: int = 5, min_repeats: int = 2,
             budget_s: float | None = None) -> Result:
    """Check the case's output, then measure it; the checking call is the first warm-up."""
    seconds, out = time_call(case.run, case.device)
    verified = case.check(out)
    del out
    measurement = measure(case.run, device=case.device, batch=case.batch,
                          warmup=max(0, warmup - 1), repeats=repeats, min_repeats=min_repeats,
                          budget_s=budget_s, estimate_s=seconds)
    return Result(case, measurement, verified)


# ---- the floor ---------------------------------------------------------------------------

def copy_bandwidth(device, nbytes: int = 256 << 20, repeats: int = 7) -> float:
    """Bytes written per second by a large tensor copy on `device` (the fastest of `repeats`).

    A copy reads and writes each byte once; its write rate bounds what a generator that
    writes its output once, and reads nothing of that size, could reach. The fastest copy is
    taken because the floor is a limit: slower copies measure interference, not the machine.
    """
    device = torch.device(device)
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)   # first touch of the pages, outside the timing
    seconds = time_calls(lambda: dst.copy_(src), device, repeats)
    return nbytes / min(seconds)


def floor_samples_per_s(bytes_per_sample: int, write_bandwidth: float) -> float:
    """Samples per second if writing the output were the only cost."""
    return write_bandwidth / bytes_per_sample


# ---- the environment ---------------------------------------------------------------------

def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        pass
    if package == "rasd_kernels":
        try:
            import rasd_kernels
            return f"{rasd_kernels.__version__} (source tree)"
        except ImportError:
            pass
    return "not installed"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """HEAD of the repository holding rasd_kernels, '+dirty' if it has local changes."""
    try:
        import rasd_kernels
        root = Path(rasd_kernels.__file__).resolve().parent.parent
    except ImportError:
        root = Path.cwd()
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty.strip() else "")


def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def environment(device, command: list[str] | None = None) -> dict:
    """Where and with what a run was made: date, machine, device, versions, commit, command."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device_name": device_name(device),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {name: version(name) for name in VERSIONED},
        "commit": git_commit(),
        "command": " ".join(command if command is not None else sys.argv),
    }
