"""The pre-training driver: config layering, errors, logging, exact resume, DDP data split,
two views, and rasd-sample. Tiny sizes (32^2, a few steps) keep it to seconds on the CPU."""

import csv
import os
import runpy
import shlex
import socket
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from rasd_pretrain import PretrainConfig, cli, register_model, sample
from rasd_pretrain._deps import INSTALL_HINT, MissingDependency
from rasd_pretrain.config import PRESETS, build, preset_values
from rasd_pretrain.models import build_model
from rasd_pretrain import train


def tiny(tmp_path, name="run", **changes) -> PretrainConfig:
    """The cpu-small preset shrunk to 32^2, batch 4, K = 4, with the plain-PyTorch convnet
    (the MONAI UNet of the preset runs in the resume and main-job tests)."""
    values = dict(preset_values("cpu-small"), shape=(32, 32), num_labels=4, batch=4, steps=2,
                  out=str(tmp_path / name), ckpt_every=100, model="convnet",
                  model_kwargs={"width": 8})
    values.update(changes)
    return build(values)


def losses(result):
    return [row["loss"] for row in result.history]


# ---- configuration -------------------------------------------------------------------------

def test_presets_are_the_published_setups():
    r3 = build(preset_values("rasd3d"))
    assert (r3.shape, r3.num_labels, r3.batch, r3.lr) == ((128, 128, 128), 8, 4, 1e-5)
    assert (r3.model, r3.model_kwargs["feature_size"], r3.embed_dim) == ("swinunetr", 48, 32)
    r2 = build(preset_values("rasd2d"))
    assert (r2.shape, r2.num_labels, r2.batch, r2.embed_dim) == ((512, 512), 16, 16, 32)
    small = build(preset_values("cpu-small"))
    assert small.spatial_dims == 2 and small.num_labels == 8 and small.model == "unet"
    assert set(PRESETS) == {"rasd3d", "rasd2d", "cpu-small"}


def test_flags_override_the_yaml_file_which_overrides_the_preset(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("preset: rasd2d\nbatch: 8\nlr: 3.0e-5\nsynthesis:\n  noise_std_max: 0.2\n")
    args = cli.parser().parse_args(["--config", str(path), "--lr", "1e-4",
                                    "--synth", "gamma_max=1.2"])
    config = cli.resolve(args)
    assert (config.shape, config.num_labels) == ((512, 512), 16)       # preset
    assert config.batch == 8                                              # file
    assert config.lr == 1e-4                                              # flag
    assert config.synthesis == {"noise_std_max": 0.2, "gamma_max": 1.2}   # both, merged


def test_switching_model_drops_the_preset_model_arguments():
    config = cli.resolve(cli.parser().parse_args(["--preset", "rasd3d", "--model", "unet"]))
    assert config.model == "unet" and config.model_kwargs == {}


@pytest.mark.parametrize("argv, message", [
    (["--lr", "-1"], "lr must be a number > 0"),
    (["--shape", "32"], "shape must be 2 or 3 ints"),
    (["--model", "nope"], "unknown model"),
    (["--synth", "nonsense=1"], "unknown synthesis setting"),
    (["--synth", "noise_std_max=-1"], "noise_std"),
    (["--batch", "3", "--device", "cpu", "--labels", "300"], "num_labels must be <= 255"),
])
def test_bad_settings_give_one_clear_line(tmp_path, capsys, argv, message):
    code = cli.main(argv + ["--out", str(tmp_path / "x"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()          # nothing written for a refused run


def test_unknown_flag_and_unknown_yaml_key(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--no-such-flag"])
    assert exc.value.code == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 0.1\n")
    assert cli.main(["--config", str(bad)]) == 2
    assert "unknown setting(s) ['learning_rate']" in capsys.readouterr().err


def test_missing_monai_names_the_extra(monkeypatch):
    for name in ("monai", "monai.networks", "monai.networks.nets"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependency, match=r"rasd_kernels\[train\]"):
        build_model("unet", spatial_dims=2, in_channels=1, out_channels=8, shape=(32, 32))
    assert "pip install 'rasd_kernels[train]'" == INSTALL_HINT


def test_unwritable_output_folder_is_refused(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code = cli.main(["--out", str(blocker / "run"), "--steps", "1", "--quiet"])
    assert code == 2 and "cannot create the output folder" in capsys.readouterr().err


# ---- the training loop -----------------------------------------------------------------------

def _readme_pretraining_demo() -> list[str]:
    """The arguments of the README's first rasd-pretrain command."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    line = next(l for l in readme.splitlines() if "bin/rasd-pretrain --preset cpu-small" in l)
    return shlex.split(line.split("#")[0])[1:]


def test_readme_pretraining_demo_runs_and_prints_its_checkpoint(tmp_path, capsys):
    # The README's demo command as written, but 2 steps and a temporary --out.
    args = _readme_pretraining_demo()
    assert args[args.index("--preset") + 1] == "cpu-small"
    args[args.index("--steps") + 1] = "2"
    out = tmp_path / "demo"
    args[args.index("--out") + 1] = str(out)
    assert cli.main([*args, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"checkpoint: {out}/checkpoints/last.pt" in printed
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "config.yaml").is_file()


def test_log_has_loss_terms_and_separate_timings(tmp_path, capsys):
    result = train(tiny(tmp_path), progress=True)
    bar = capsys.readouterr().err
    assert "rasd-pretrain" in bar and "2/2" in bar and "synth_ms=" in bar and "model_ms=" in bar
    with open(result.out + "/log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2]
    for r in rows:
        loss, seg, dec = float(r["loss"]), float(r["segmentation"]), float(r["decoupling"])
        assert loss == pytest.approx(seg + dec, rel=1e-6) and seg > 0 and dec > 0
        assert float(r["synth_ms"]) > 0 and float(r["model_ms"]) > 0
        assert float(r["samples_per_s"]) > 0


def test_exact_resume(tmp_path):
    # 4 steps straight == 2 steps, stop, resume, 2 more (same losses, same weights), with the
    # small MONAI UNet of the cpu-small preset.
    unet = dict(model="unet", model_kwargs=PRESETS["cpu-small"]["model_kwargs"])
    straight = train(tiny(tmp_path, "straight", steps=4, **unet), quiet=True)
    first = train(tiny(tmp_path, "split", steps=2, **unet), quiet=True)
    second = train(tiny(tmp_path, "split", steps=4, **unet), resume=True, quiet=True)
    assert second.start_step == 2
    assert losses(straight) == losses(first) + losses(second)
    a = torch.load(straight.checkpoint, weights_only=True)["model"]
    b = torch.load(second.checkpoint, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with open(second.out + "/log.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]


def test_resume_refuses_another_config(tmp_path):
    train(tiny(tmp_path, steps=1), quiet=True)
    with pytest.raises(ValueError, match=r"different configuration:\n  lr: 0.001 in the ch"):
        train(tiny(tmp_path, steps=2, lr=0.01), resume=True, quiet=True)


def test_cli_resume_reads_the_run_folder(tmp_path, capsys):
    out = str(tmp_path / "cli")
    small = ["--model", "convnet", "--shape", "32", "32", "--batch", "2", "--quiet"]
    assert cli.main(["--steps", "1", "--out", out] + small) == 0
    assert cli.main(["--out", out, "--resume", "--steps", "2", "--quiet"]) == 0
    with open(out + "/log.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2]
    assert cli.main(["--out", out, "--resume", "--steps", "3", "--batch", "4"]) == 2
    assert "batch: 2 in the checkpoint, 4 now" in capsys.readouterr().err


def test_steps_may_change_on_resume_except_under_a_cosine_schedule():
    from rasd_pretrain.config import differences
    saved = build(preset_values("cpu-small")).to_dict()
    assert differences(saved, build(preset_values("cpu-small"), {"steps": 999})) == []
    cosine = build(preset_values("cpu-small"), {"schedule": "cosine"})
    assert differences(cosine.to_dict(), cosine.replace(steps=999)) == [
        "steps: 200 in the checkpoint, 999 now"]


def test_existing_run_is_not_overwritten_without_overwrite(tmp_path):
    first = train(tiny(tmp_path, steps=1), quiet=True)
    stamp = os.path.getmtime(first.checkpoint)
    with pytest.raises(ValueError, match="already holds a run.*--overwrite"):
        train(tiny(tmp_path, steps=1), quiet=True)
    assert os.path.getmtime(first.checkpoint) == stamp
    assert train(tiny(tmp_path, steps=1), overwrite=True, quiet=True).end_step == 1


class Doubler(torch.nn.Module):
    """A non-MONAI backbone: one 3x3 convolution to E channels."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def test_any_module_plugs_in(tmp_path):
    register_model("doubler", lambda *, spatial_dims, in_channels, out_channels, shape:
                   Doubler(in_channels, out_channels))
    result = train(tiny(tmp_path, model="doubler", model_kwargs={}, steps=1), quiet=True)
    assert result.end_step == 1
    module = train(tiny(tmp_path, "direct", steps=1), model=Doubler(1, 32), quiet=True)
    assert module.end_step == 1


def test_a_module_with_the_wrong_output_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"must map \[B, C, \*S\] to \[B, E, \*S\]"):
        train(tiny(tmp_path, steps=1), model=Doubler(1, 7), quiet=True)
    assert not (tmp_path / "run").exists()


def test_two_views_add_a_consistency_term(tmp_path):
    result = train(tiny(tmp_path, views=2, batch=2, steps=1), quiet=True)
    row = result.history[0]
    assert row["consistency"] > 0
    assert row["loss"] == pytest.approx(row["segmentation"] + row["decoupling"]
                                        + row["consistency"], rel=1e-6)


def test_3d_runs(tmp_path):
    config = tiny(tmp_path, shape=(16, 16, 16), batch=2, steps=1, model_kwargs={"width": 4})
    result = train(config, quiet=True)
    assert result.end_step == 1 and result.history[0]["loss"] > 0


def test_python_m_entry_point(monkeypatch, capsys):
    # What `python -m rasd_pretrain` (and `torchrun -m rasd_pretrain`) executes.
    monkeypatch.setattr(sys, "argv", ["rasd_pretrain", "--preset", "rasd3d", "--print-config"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("rasd_pretrain", run_name="__main__")
    assert exc.value.code == 0 and "feature_size: 48" in capsys.readouterr().out


# ---- data parallel -----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank, world, port, config, out_dir):
    # The torchrun environment, so train() takes the same path as under torchrun.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    result = train(config, quiet=True)
    params = torch.cat([p.detach().flatten() for p in
                        torch.load(result.checkpoint, weights_only=True)["model"].values()])
    torch.save({"indices": result.indices, "losses": losses(result),
                "params": params}, os.path.join(out_dir, f"rank{rank}.pt"))


def test_ddp_ranks_draw_disjoint_indices_covering_the_global_batch(tmp_path):
    # Plain-PyTorch model: no BatchNorm, so 2 ranks x 2 samples == 1 rank x 4 samples.
    config = tiny(tmp_path, "ddp", steps=2)
    # spawn, not fork: a forked child inherits the parent's OpenMP thread pool (busy after the
    # kernel tests) and deadlocks in its first parallel region.
    ranks = mp.start_processes(_rank_main, args=(2, _free_port(), config, str(tmp_path)),
                               nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + 300
    while not ranks.join(timeout=5):
        if time.monotonic() > deadline:
            for process in ranks.processes:
                process.kill()
            pytest.fail("the two DDP ranks did not finish within 300 s")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["indices"] == [0, 1, 4, 5] and r1["indices"] == [2, 3, 6, 7]
    assert not set(r0["indices"]) & set(r1["indices"])
    assert sorted(r0["indices"] + r1["indices"]) == list(range(2 * config.batch))
    # Ranks log the same (all-reduced) loss, and one process on the whole batch agrees.
    single = train(config.replace(out=str(tmp_path / "single")), quiet=True)
    assert r0["losses"] == r1["losses"]
    assert r0["losses"] == pytest.approx(losses(single), rel=1e-5)


def test_global_batch_must_split_evenly_over_ranks(tmp_path, monkeypatch):
    # Checked before anything is written (world size read from the torchrun environment).
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr("torch.distributed.is_initialized", lambda: True)
    with pytest.raises(ValueError, match=r"the global batch \(4\) must be divisible"):
        train(tiny(tmp_path, steps=1), quiet=True)
    assert not (tmp_path / "run").exists()


# ---- rasd-sample ---------------------------------------------------------------------------------

def test_rasd_sample_writes_nifti_pairs_and_a_gallery(tmp_path, capsys):
    import nibabel as nib
    out = tmp_path / "samples"
    argv = ["--n", "3", "--out", str(out), "--shape", "32", "32", "32", "--labels", "5",
            "--batch", "2", "--start-index", "7"]
    assert sample.main(argv) == 0
    for i in (7, 8, 9):
        img = nib.load(out / f"sample_{i:06d}_image.nii.gz").get_fdata()
        lab = nib.load(out / f"sample_{i:06d}_label.nii.gz").get_fdata()
        assert img.shape == lab.shape == (32, 32, 32)
        assert 0.0 <= img.min() and img.max() <= 1.0 and set(lab.ravel()) <= set(range(5))
    assert (out / "gallery.png").stat().st_size > 0
    # The pairs are the training samples of the same (seed, index).
    from rasd_kernels import synthesize
    image, label = synthesize(1, (32, 32, 32), 5, seed=0, start_index=8)
    saved = nib.load(out / "sample_000008_label.nii.gz").get_fdata()
    assert torch.equal(torch.from_numpy(saved).to(torch.uint8), label[0])
    # Nothing is overwritten without --overwrite.
    assert sample.main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert sample.main(argv + ["--overwrite"]) == 0
