"""The README's commands and snippets, run as written."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _blocks(section: str, language: str) -> list[str]:
    """The fenced code blocks of one `## ` section."""
    start = README.index(f"\n## {section}\n")
    end = README.find("\n## ", start + 1)
    text = README[start:end if end > 0 else None]
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def _first_bash_lines() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)[:2]


def test_the_main_command_benchmarks_both_presets():
    from rasd_bench.cli import parse_args

    main = _first_bash_lines()[0].strip()
    bench = main.split("&&")[-1].strip()
    argv = shlex.split(bench)
    assert Path(argv[0]).name == "rasd-bench"
    args = parse_args(argv[1:])
    assert args.preset == ["rasd3d", "rasd2d"]
    # The space-separated form selects the same.
    assert parse_args(["--preset", "rasd3d", "rasd2d"]).preset == ["rasd3d", "rasd2d"]


def test_the_test_command_is_what_ci_runs():
    test = _first_bash_lines()[1].strip()
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert test in ci.splitlines()


def test_the_main_command_installs_what_ci_installs():
    main = _first_bash_lines()[0]
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    extras = re.search(r"pip install '(\.\[[^\]]+\])'", main).group(1)
    assert f"'{extras}'" in ci


@pytest.mark.parametrize("section", ["Use", "Use in a training loop"])
def test_python_snippets_run(section, tmp_path, monkeypatch):
    snippets = _blocks(section, "python")
    assert snippets
    monkeypatch.chdir(tmp_path)
    for code in snippets:
        if "init_process_group" in code:
            continue                          # run under torchrun below
        exec(compile(code, f"README {section}", "exec"), {"__name__": "__main__"})


def test_torchrun_snippet_runs(tmp_path):
    (code,) = [c for c in _blocks("Use in a training loop", "python")
               if "init_process_group" in c]
    script = tmp_path / "ranks.py"
    # Each rank writes its last batch's rows to a file of its own (the two processes' standard
    # outputs would interleave).
    script.write_text(code + "\nimport os\nwith open(f\"rows_{os.environ['RANK']}.txt\", \"w\")"
                      " as f:\n    f.write(str(rows))\n")
    torchrun = Path(sys.executable).with_name("torchrun")
    done = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", str(script)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [(tmp_path / f"rows_{rank}.txt").read_text() for rank in (0, 1)]
    assert rows == ["[24, 25, 26, 27]", "[28, 29, 30, 31]"]


def _pretraining_commands() -> dict[str, list[str]]:
    """The README's Pre-training commands by program: argv with .venv/bin/ resolved to the
    interpreter's own folder (the demo line is run in test_pretrain_driver, shortened)."""
    (block,) = _blocks("Pre-training", "bash")
    commands = {}
    for line in block.splitlines():
        argv = shlex.split(line.split("#")[0])
        argv[0] = str(Path(sys.executable).with_name(Path(argv[0]).name))
        commands.setdefault(Path(argv[0]).name, []).append(argv)
    return commands


def test_the_sample_command_runs_as_written(tmp_path):
    (argv,) = _pretraining_commands()["rasd-sample"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    written = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert written == ["gallery.png"] + [f"sample_{i:06d}_{kind}.nii.gz" for i in range(4)
                                         for kind in ("image", "label")]


def test_the_published_setup_command_needs_cuda_and_says_so_here(tmp_path):
    import torch
    (argv,) = [a for a in _pretraining_commands()["rasd-pretrain"] if "rasd3d" in a]
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the command would start the published pre-training")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 2
    assert "device 'cuda' was asked for but CUDA is not available" in done.stderr
    assert not (tmp_path / "runs").exists()
