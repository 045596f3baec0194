"""rasd-bench: JSON schema, every requested tool reported, checks that reject broken outputs,
table formatting, the timing protocol, and the thin bench scripts. Tiny sizes only."""

import importlib.util
import json
import math
import time
from pathlib import Path

import pytest
import torch

from rasd_bench import alternatives, cli, timing
from rasd_bench.timing import CorrectnessError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--shape", "24", "24", "24", "--labels", "4", "--batch", "1", "--repeats", "2",
        "--budget", "0.5"]
TINY_STAGES = ["--stages", "full", "labels", "appearance", "bias_field"]
KEYS = {"tool": str, "preset": str, "stage": str, "samples_per_s": float, "spread": dict,
        "device": str, "device_name": str, "shape": list, "labels": int, "batch": int,
        "repeats": int, "ms_per_sample": float, "bytes_per_sample": int,
        "copy_bytes_per_s": float, "floor_samples_per_s": float, "floor_fraction": float,
        "check": str, "note": str, "env": dict}


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benches" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def records():
    """One tiny run of every tool, shared by the schema tests."""
    return cli.run(cli.parse_args([*TINY, *TINY_STAGES]))


# ---- the JSON records --------------------------------------------------------------------

def test_records_have_the_schema(records):
    for r in records:
        for key, kind in KEYS.items():
            assert isinstance(r[key], kind), (key, r[key])
        assert json.loads(json.dumps(r)) == r
        assert r["samples_per_s"] > 0 and r["repeats"] >= 2
        assert r["spread"]["p20"] <= r["samples_per_s"] <= r["spread"]["p80"]
        assert r["bytes_per_sample"] in (24 ** 3, 4 * 24 ** 3, 5 * 24 ** 3)
        assert math.isclose(r["floor_fraction"],
                            r["samples_per_s"] / r["floor_samples_per_s"])
        assert r["tool"].startswith("rasd-") or r["tool"] in ("literal", "torchio", "monai")


def test_environment_is_recorded(records):
    env = records[0]["env"]
    assert set(timing.VERSIONED) <= set(env["versions"])
    assert env["versions"]["torch"].startswith(torch.__version__.split("+")[0])
    assert len(env["commit"]) >= 40 or env["commit"] == "unknown"
    assert env["cores"] >= 1 and env["cpu"] and env["date"]
    assert env["command"].startswith("rasd-bench --shape 24 24 24")


def test_every_requested_tool_and_stage_appears(records):
    seen = {(r["tool"].split("-")[0], r["stage"]) for r in records}
    for tool in ("rasd", "literal", "torchio", "monai"):
        assert (tool, "full") in seen and (tool, "appearance") in seen
    for tool in ("rasd", "literal"):
        assert (tool, "labels") in seen
    for tool in ("rasd", "torchio", "monai"):
        assert (tool, "bias_field") in seen
    # Others are compared with the fastest of ours on the same stage.
    for r in records:
        assert (r["speedup"] is None) == r["tool"].startswith("rasd")
        if r["speedup"] is not None:
            assert r["speedup_of"].startswith("rasd-") and r["speedup"] > 0


def test_ours_are_checked_against_the_reference(records):
    ours = [r for r in records if r["tool"].startswith("rasd-")]
    assert ours
    for r in ours:
        assert r["note"] in ("is the reference",) or "matches reference" in r["note"]
    assert all("finite" in r["check"] or "labels" in r["check"] for r in records)


def test_main_prints_json_lines_and_fails_below_min_speedup(capsys, tmp_path):
    saved = tmp_path / "out.jsonl"
    assert cli.main([*TINY, "--tools", "rasd", "monai", "--stages", "full", "--json",
                     "--save", str(saved), "--min-speedup", "1e9"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    parsed = [json.loads(line) for line in lines]
    assert {r["tool"].split("-")[0] for r in parsed} == {"rasd", "monai"}
    assert saved.read_text().strip().splitlines() == lines
    assert "required 1000000000.0x" in captured.err


# ---- correctness checks reject broken outputs --------------------------------------------

def good_output(batch=2, shape=(5, 6, 7), k=4):
    g = torch.Generator().manual_seed(0)
    return (torch.rand(batch, 1, *shape, generator=g),
            torch.randint(0, k, (batch, *shape), generator=g, dtype=torch.uint8))


def test_checks_accept_a_good_output():
    image, label = good_output()
    assert "labels" in cli.check_labels(label, 2, (5, 6, 7), 4)
    assert "finite" in cli.check_image(image, 2, 1, (5, 6, 7))
    assert "N(0, 1)" in cli.check_normals(torch.randn(4, 5000))


@pytest.mark.parametrize("broken", ["nan", "above_one", "negative", "shape", "dtype"])
def test_image_check_rejects(broken):
    image, _ = good_output()
    if broken == "nan":
        image[1, 0, 2, 3, 4] = float("nan")
    elif broken == "above_one":
        image[0, 0, 0, 0, 0] = 1.5
    elif broken == "negative":
        image[0, 0, 0, 0, 0] = -0.1
    elif broken == "shape":
        image = image[:, :, :4]
    else:
        image = image.double()
    with pytest.raises(CorrectnessError):
        cli.check_image(image, 2, 1, (5, 6, 7))


def test_label_check_rejects_labels_out_of_range_and_wrong_dtype():
    _, label = good_output()
    label[0, 1, 2, 3] = 4
    with pytest.raises(CorrectnessError, match="label 4"):
        cli.check_labels(label, 2, (5, 6, 7), 4)
    with pytest.raises(CorrectnessError):
        cli.check_labels(label.long(), 2, (5, 6, 7), 4)


def test_noise_check_rejects_wrong_distribution():
    with pytest.raises(CorrectnessError):
        cli.check_normals(2.0 * torch.randn(4, 5000))
    with pytest.raises(CorrectnessError):
        cli.check_normals(torch.rand(4, 5000))


def test_reference_comparison_rejects_disagreement():
    image, label = good_output(shape=(10, 10, 10))
    assert "matches" in cli.compare_images(image, image.clone(), label, label.clone())
    flipped = label.clone()
    flipped[0, :2] = (flipped[0, :2] + 1) % 4          # 10 % of the labels
    with pytest.raises(CorrectnessError, match="labels differ"):
        cli.compare_images(image, image, flipped, label)
    with pytest.raises(CorrectnessError, match="image voxels differ"):
        cli.compare_images(image + 0.01, image, label, label)


@pytest.mark.parametrize("broken", ["nan", "shape", "count", "range"])
def test_alternative_check_rejects(broken):
    images = [torch.rand(1, 6, 7, 8) for _ in range(2)]
    if broken == "nan":
        images[1][0, 1, 1, 1] = float("inf")
    elif broken == "shape":
        images[0] = images[0][:, :5]
    elif broken == "count":
        images = images[:1]
    else:
        images[0] = images[0] + 2
    with pytest.raises(CorrectnessError):
        alternatives.check_images(images, 2, (6, 7, 8), unit_range=True)


def test_broken_pipeline_is_never_timed(monkeypatch, capsys):
    """A synthesis that writes NaN fails the run before any timing or output."""
    def broken(image, label, **kwargs):
        image.fill_(float("nan"))
        label.zero_()

    timed = []
    monkeypatch.setattr(cli, "synthesize_into", broken)
    monkeypatch.setattr(cli, "compare_to_reference", lambda *args: "not compared")
    monkeypatch.setattr(timing, "time_calls", lambda *a, **k: timed.append(1) or [1.0])
    assert cli.main([*TINY, "--tools", "rasd", "--stages", "full", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "non-finite" in captured.err and not timed


# ---- output formatting -------------------------------------------------------------------

def fake_record(tool, stage, rate, speedup=None):
    return {"tool": tool, "preset": "rasd3d", "stage": stage, "batch": 4,
            "samples_per_s": rate, "spread": {"p20": 0.9 * rate, "p80": 1.1 * rate},
            "ms_per_sample": 1e3 / rate, "floor_fraction": rate / 1000.0, "speedup": speedup,
            "speedup_of": "rasd-cpu" if speedup else None, "note": ""}


def test_table_is_aligned_and_ordered():
    records = [fake_record("monai", "full", 3.5, 10.0), fake_record("rasd-cpu", "labels", 80),
               fake_record("rasd-cpu", "full", 35.0), fake_record("literal", "full", 0.149,
                                                                 234.9)]
    lines = cli.format_table(records).splitlines()
    assert lines[0].split() [:3] == ["preset", "stage", "tool"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    tools = [line.split()[2] for line in lines[2:]]
    assert tools == ["rasd-cpu", "literal", "monai", "rasd-cpu"]   # full first, ours first
    rate_col = lines[0].index("samples/s") + len("samples/s")
    for line in lines[2:]:
        assert line[rate_col - 1] != " "                           # numbers right-aligned
    assert "235x" in lines[3] and "0.149" in lines[3] and "0.0149 %" in lines[3]
    assert lines[2].endswith("%")                                  # ours: no ratio


def test_markdown_table():
    records = [fake_record("rasd-cpu", "full", 1234.5), fake_record("torchio", "full", 2, 617)]
    lines = cli.format_table(records, markdown=True).splitlines()
    assert len(lines) == 4 and all(line.startswith("|") and line.endswith("|")
                                   for line in lines)
    assert "| 1,234 |" in lines[2] or "| 1,235 |" in lines[2]
    assert "617x" in lines[3]


def test_number_format():
    assert [cli.number(x) for x in (12345.6, 123.4, 12.34, 1.234, 0.01234)] == \
        ["12,346", "123", "12.3", "1.23", "0.0123"]


# ---- the timing protocol -----------------------------------------------------------------

def test_percentile_matches_numpy_default():
    import numpy as np
    values = [5.0, 1.0, 4.0, 2.0]
    for q in (0, 20, 50, 80, 100):
        assert math.isclose(timing.percentile(values, q), float(np.percentile(values, q)))


def test_measure_counts_calls_and_respects_the_budget():
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.02)

    m = timing.measure(slow, device="cpu", batch=3, warmup=1, repeats=50, min_repeats=2,
                       budget_s=0.05)
    assert 2 <= len(m.seconds) <= 3 and len(calls) == 1 + len(m.seconds)
    assert all(s >= 0.02 for s in m.seconds)
    assert math.isclose(m.samples_per_s(), timing.percentile([3 / s for s in m.seconds], 50))


def test_run_case_checks_before_timing():
    order = []
    case = timing.Case("t", "full", 1, torch.device("cpu"), run=lambda: order.append("run"),
                       check=lambda out: order.append("check") or "ok")
    result = timing.run_case(case, warmup=1, repeats=3)
    assert order == ["run", "check", "run", "run", "run"] and result.check == "ok"


def test_copy_bandwidth_is_positive():
    assert timing.copy_bandwidth("cpu", nbytes=1 << 20, repeats=2) > 1e6


# ---- arguments and the bench scripts -----------------------------------------------------

@pytest.mark.parametrize("argv", [["--shape", "8", "8", "8", "8"],
                                  ["--preset", "rasd3d", "--shape", "24", "24"],
                                  ["--batch", "0"], ["--tools", "nothing"]])
def test_bad_arguments_exit(argv):
    with pytest.raises(SystemExit):
        cli.parse_args(argv)


def test_presets_and_custom_workloads():
    w3, w2 = cli.workloads(cli.parse_args(["--preset", "rasd3d", "rasd2d"]))
    assert (w3.shape, w3.num_labels, w3.batch) == ((128, 128, 128), 8, 4)
    assert (w2.shape, w2.num_labels, w2.batch) == ((512, 512), 16, 16)
    (custom,) = cli.workloads(cli.parse_args(TINY))
    assert (custom.preset, custom.shape, custom.num_labels, custom.batch) == \
        ("custom", (24, 24, 24), 4, 1)
    assert custom.bytes_written("full") == 5 * 24 ** 3
    assert custom.bytes_written("labels") == 24 ** 3


def test_backend_selection():
    cpu = torch.device("cpu")
    default = cli.select_backends(None, cpu)
    assert default and (default == ["reference"] or "reference" not in default)
    assert "reference" in cli.select_backends(["all"], cpu)
    with pytest.raises(SystemExit):
        cli.select_backends(["cuda"], cpu)


def test_bench_synthesize_ends_with_one_json_line_per_case(capsys):
    script = load_script("bench_synthesize")
    assert script.main([*TINY[:6], "--repeats", "2", "--budget", "0.5"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    line = json.loads(last)
    assert set(line) == {"preset", "backend", "samples_per_s", "literal_samples_per_s"}
    assert line["preset"] == "custom" and line["literal_samples_per_s"] > 0


@pytest.mark.parametrize("name,stage", [("bench_philox_fill", "philox_fill"),
                                        ("bench_gmm_shapes", "gmm_shapes"),
                                        ("bench_bias_field", "bias_field"),
                                        ("bench_appearance", "appearance")])
def test_op_bench_scripts(name, stage, capsys):
    script = load_script(name)
    assert script.main([*TINY, "--tools", "rasd", "--json"]) == 0
    stages = {json.loads(line)["stage"] for line in capsys.readouterr().out.splitlines()}
    assert stage in stages


def test_plot_and_results_markdown(records, tmp_path):
    data = tmp_path / "r.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    script = load_script("plot_results")
    png, md = tmp_path / "r.png", tmp_path / "R.md"
    assert script.main([str(data), "--png", str(png), "--markdown", str(md)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    for needed in ("rasd-bench --shape 24 24 24", "commit", "machine", "| preset |",
                   "r.png", "versions", "target 5x over every other full pipeline"):
        assert needed in text


def test_results_markdown_keeps_the_hand_written_sections(records, tmp_path):
    data = tmp_path / "r.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    script = load_script("plot_results")
    md = tmp_path / "R.md"
    md.write_text("old table\n\n" + script.KEEP_MARKER + "\n## GPU\nH100, 2026-11-28: 123\n")
    assert script.main([str(data), "--png", str(tmp_path / "r.png"), "--markdown", str(md)]) == 0
    text = md.read_text()
    assert "old table" not in text and "| preset |" in text
    assert text.endswith(script.KEEP_MARKER + "\n## GPU\nH100, 2026-11-28: 123\n")


def test_acquisition_table_times_every_option_and_the_alternatives(capsys, tmp_path):
    saved = tmp_path / "acquisition.jsonl"
    assert cli.main([*TINY, "--acquisition", "--save", str(saved)]) == 0
    table = capsys.readouterr().out
    rows = [json.loads(line) for line in saved.read_text().splitlines()]
    ours = [(r["option"], r["stage"]) for r in rows if r["tool"].startswith("rasd")]
    assert ours == [("no option", "labels"), ("no option", "images"),
                    ("thick slices", "images"), ("low resolution", "images"),
                    ("background clearing", "images"), ("border zeros", "labels")]
    assert {r["option"] for r in rows if not r["tool"].startswith("rasd")} == {
        "RandomAnisotropy", "RandSimulateLowResolution"}
    assert all(r["ms_per_batch"] > 0 for r in rows)
    assert rows[0]["extra_ms"] == 0.0 and rows[1]["extra_ms"] == 0.0
    assert rows[0]["relative"] == 1.0
    assert "| custom | thick slices | rasd-" in table


def test_the_clinical_preset_is_benchmarked_alone():
    (w,) = cli.workloads(cli.parse_args(["--preset", "rasd3d-clinical"]))
    assert w.config.thick_slice_prob > 0 and w.config.lowres_prob > 0
    for tool in ("literal", "torchio", "monai"):
        assert "no acquisition options" in cli.tool_unavailable(tool, w)
    assert cli.tool_unavailable("rasd", w) is None
