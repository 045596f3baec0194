"""Plot rasd-bench results and write benches/RESULTS.md from them.

    rasd-bench --preset rasd3d rasd2d --save benches/results.jsonl
    python benches/plot_results.py benches/results.jsonl

Writes benches/results.png (samples/s of each tool's full pipeline per preset, log scale) and
benches/RESULTS.md (the command, machine, date, versions, commit, floor and the whole table).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    from rasd_bench import cli
except ImportError:   # run from a source checkout without installing
    sys.path[:0] = [str(Path(__file__).resolve().parents[1] / p) for p in ("python", ".")]
    from rasd_bench import cli

HERE = Path(__file__).resolve().parent


def load(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot(records: list[dict], out: Path, stage: str = "full") -> None:
    """Grouped bars: one group per preset, one bar per tool, log-scale samples/s."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = sorted((r for r in records if r["stage"] == stage), key=cli.order_key)
    presets = list(dict.fromkeys(r["preset"] for r in chosen))
    tools = list(dict.fromkeys(r["tool"] for r in chosen))
    width = 0.8 / max(1, len(tools))
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(tools) * len(presets), 4.2))
    for i, tool in enumerate(tools):
        xs, ys, lo, hi = [], [], [], []
        for j, preset in enumerate(presets):
            r = next((r for r in chosen if r["tool"] == tool and r["preset"] == preset), None)
            if r is None:
                continue
            xs.append(j + (i - (len(tools) - 1) / 2) * width)
            ys.append(r["samples_per_s"])
            lo.append(max(0.0, r["samples_per_s"] - r["spread"]["p20"]))
            hi.append(max(0.0, r["spread"]["p80"] - r["samples_per_s"]))
        bars = ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=tool)
        ax.bar_label(bars, labels=[cli.number(y) for y in ys], fontsize=7, padding=2)
    ax.set_yscale("log")
    rates = [r["samples_per_s"] for r in chosen] or [1.0]
    ax.set_ylim(min(rates) / 3, max(rates) * 5)      # room for the value labels and legend
    ax.set_xticks(range(len(presets)))
    ax.set_xticklabels(presets)
    ax.set_ylabel("samples / s (log scale)")
    env = chosen[0]["env"] if chosen else {}
    ax.set_title(f"RaSD synthesis, {stage} pipeline, {env.get('device_name', '')} "
                 f"({env.get('cores', '?')} cores)\nbars: median, whiskers: p20-p80",
                 fontsize=10)
    ax.legend(fontsize=8, ncol=min(4, len(tools)), loc="upper right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def target_lines(records: list[dict], target: float) -> str:
    """Per preset: does the fastest of ours beat every other tool's full pipeline `target`x?"""
    lines = []
    for preset in dict.fromkeys(r["preset"] for r in records):
        others = [r for r in records if r["preset"] == preset and r["stage"] == "full"
                  and r["speedup"] is not None]
        if not others:
            continue
        worst = min(others, key=lambda r: r["speedup"])
        verdict = "met" if worst["speedup"] >= target else "NOT met"
        lines.append(f"{preset}: target {target:g}x over every other full pipeline {verdict}; "
                     f"closest: {worst['tool']} at {worst['speedup']:.2f}x")
    return "\n".join(lines)


def markdown(records: list[dict], png: str, data: str, target: float = 5.0) -> str:
    env = records[0]["env"]
    return "\n\n".join([
        "# Benchmark results",
        "Throughput of RaSD synthesis: ours (`rasd-<backend>`) beside the literal published "
        "generator (`literal`), TorchIO and MONAI, on the same workload in the same run. "
        "TorchIO and MONAI start from label maps they are given (made by our op outside the "
        "timing), so their `full` is their appearance chain alone. Every output is checked "
        "before it is timed. `% of floor`: the rate as a fraction of what this machine could "
        "reach if writing the output (4 bytes per image voxel, 1 per label voxel) at the "
        "speed of a large tensor copy were the only cost. `ours/this`: the fastest of ours "
        "over this tool, same preset and stage.",
        f"Command:\n\n```\n{env['command']}\npython benches/plot_results.py {data}\n```",
        "```\n" + cli.format_header(records) + "\n```",
        cli.format_table(records, markdown=True),
        "```\n" + cli.format_summary(records) + "\n" + target_lines(records, target)
        + "\n```",
        f"![samples/s per tool and preset]({png})",
    ]) + "\n"


KEEP_MARKER = "<!-- Sections below this line are kept when plot_results.py rewrites the file. -->"


def kept_sections(path: Path) -> str:
    """The hand-written sections (GPU runs, other experiments) that follow KEEP_MARKER."""
    if not path.exists():
        return "\n" + KEEP_MARKER + "\n"
    text = path.read_text()
    at = text.find(KEEP_MARKER)
    return "\n" + (text[at:] if at >= 0 else KEEP_MARKER + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="?", default=str(HERE / "results.jsonl"),
                   help="JSON lines written by rasd-bench --save")
    p.add_argument("--png", default=str(HERE / "results.png"))
    p.add_argument("--markdown", default=str(HERE / "RESULTS.md"))
    p.add_argument("--stage", default="full", help="stage plotted")
    p.add_argument("--target", type=float, default=5.0,
                   help="speedup of our full pipeline over every other one to report on")
    args = p.parse_args(argv)
    records = load(args.results)
    if not records:
        p.error(f"{args.results} holds no results")
    plot(records, Path(args.png), args.stage)
    md_dir = Path(args.markdown).resolve().parent
    png = Path(args.png).resolve()
    rel_png = png.relative_to(md_dir) if png.is_relative_to(md_dir) else png
    Path(args.markdown).write_text(markdown(records, str(rel_png), args.results, args.target)
                                   + kept_sections(Path(args.markdown)))
    print(f"wrote {args.png} and {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
