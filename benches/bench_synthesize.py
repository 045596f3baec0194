"""Throughput of rasd_kernels.synthesize against the literal published generator.

    python benches/bench_synthesize.py                 # rasd3d (batch 4) and rasd2d (batch 16)
    python benches/bench_synthesize.py --backends all  # every backend built here

A thin wrapper of rasd-bench (same checks and timing: correctness first, median and spread):
its table, then one JSON line per case,
{"preset", "backend", "samples_per_s", "literal_samples_per_s"}. Extra arguments go to
rasd-bench (--shape, --batch, --repeats, ... replace the defaults).
"""

import json
import sys
from pathlib import Path

try:
    from rasd_bench import cli
except ImportError:   # run from a source checkout without installing
    sys.path[:0] = [str(Path(__file__).resolve().parents[1] / p) for p in ("python", ".")]
    from rasd_bench import cli


def summary(records: list[dict]) -> list[dict]:
    """One line per (preset, our backend): our full-pipeline rate beside the literal's."""
    literal = {r["preset"]: r["samples_per_s"] for r in records
               if r["tool"] == "literal" and r["stage"] == "full"}
    return [{"preset": r["preset"], "backend": r["tool"].removeprefix("rasd-"),
             "samples_per_s": r["samples_per_s"],
             "literal_samples_per_s": literal.get(r["preset"])}
            for r in records if r["tool"].startswith("rasd-") and r["stage"] == "full"]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    workload = [] if {"--preset", "--shape"} & set(argv) else ["--preset", "rasd3d", "rasd2d"]
    args = cli.parse_args([*workload, "--tools", "rasd", "literal", "--stages", "full", *argv])
    try:
        records = cli.run(args)
    except cli.CorrectnessError as exc:
        print(f"bench_synthesize: correctness check failed, nothing timed: {exc}",
              file=sys.stderr)
        return 2
    print(cli.format_header(records))
    print(cli.format_table(records))
    for line in summary(records):
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
