"""Benchmark of GMM shapes: the fused label-map kernel alone (gmm_shapes) and with its parameter
draws (labels), beside the literal generator's label maps.

    python benches/bench_gmm_shapes.py                  # rasd3d; any rasd-bench argument works

A thin wrapper of rasd-bench: --tools rasd literal --stages gmm_shapes labels.
"""

import sys
from pathlib import Path

try:
    from rasd_bench import cli
except ImportError:   # run from a source checkout without installing
    sys.path[:0] = [str(Path(__file__).resolve().parents[1] / p) for p in ("python", ".")]
    from rasd_bench import cli

DEFAULTS = ["--tools", "rasd", "literal", "--stages", "gmm_shapes", "labels"]


def main(argv=None) -> int:
    return cli.main([*DEFAULTS, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
