"""Transfer: the 3D MNI152 task, the fine-tuning augmentations, sliding-window evaluation,
budget checkpoints, load_pretrained into MONAI networks, the README's fine-tuning snippet,
stopping a run early (--stop-at, Ctrl-C), and benches/gpu_transfer.py --quick."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rasd_pretrain import augment as aug
from rasd_pretrain import finetune as ft
from rasd_pretrain import load_pretrained, train
from rasd_pretrain import mni_tissue as mt
from rasd_pretrain import mni_tissue3d as m3
from rasd_pretrain import transfer as tr
from rasd_pretrain.cli import main as pretrain_main
from rasd_pretrain.config import build
from rasd_pretrain.export import export

import monai.networks.nets as monai_nets  # noqa: E402 - the finetune extra
import nilearn  # noqa: E402,F401

ROOT = Path(__file__).resolve().parents[1]
TINY_UNET = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}


@pytest.fixture(scope="module")
def volume():
    return m3.build(volumes=mt.load_template(1))


# ---- the 3D task ------------------------------------------------------------------------------

@pytest.mark.parametrize("k,patch", [(1, 24), (2, 24), (4, 32)])
def test_3d_split_keeps_train_patches_and_test_region_apart(volume, k, patch):
    xtr, ytr, xte, yte, meta = m3.split(volume, k, patch=patch)
    assert xtr.shape == (k, 1, patch, patch, patch) and ytr.shape == (k, patch, patch, patch)
    assert xte.shape[:2] == (1, 1) and yte.shape == xte.shape[:1] + xte.shape[2:]
    # Test region and training slab are separated by more than the gap, in mm.
    assert meta["train_z_mm"][0] - meta["test_z_mm"][1] > m3.DEFAULT_GAP
    # Patches lie in the slab centred at the ventricles, distinct, and hold every tissue.
    assert meta["train_z_mm"][0] <= m3.CENTRE_MM <= meta["train_z_mm"][1]
    assert len({c for c in meta["train_corners"]}) == k
    assert (mt.class_fractions(ytr)[1:] > 0.03).all()
    # The test region is the lower brain: mostly background, every tissue present.
    frac = mt.class_fractions(yte)
    assert frac[0] > 0.5 and (frac[1:] > 0.005).all()
    # Images are the template's T1 (dark outside the brain, WM brighter than GM than CSF).
    assert xte[0, 0][yte[0] == 0].max() == 0.0
    means = [volume.image[volume.label == c].mean() for c in (1, 2, 3)]
    assert means[0] < means[1] < means[2]
    assert m3.split(volume, k, patch=patch)[4] == meta


def test_3d_split_refuses_impossible_requests(volume):
    with pytest.raises(ValueError, match="k must be"):
        m3.split(volume, 500, patch=24)
    with pytest.raises(ValueError, match="no voxel row"):
        m3.split(volume, 1, patch=24, gap=200)
    with pytest.raises(ValueError, match="does not fit"):
        m3.split(volume, 1, patch=128)


# ---- augmentations ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 1, 12, 12), (2, 1, 8, 8, 8), (2, 1, 8, 6, 6)])
def test_flip_rot90_moves_image_and_label_together_exactly(shape):
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (shape[0], *shape[2:]), generator=gen)
    x = (y.float() / 3)[:, None]
    seen = set()
    for _ in range(8):
        xa, ya = aug.flip_rot90(x, y, gen)
        assert xa.shape == x.shape and torch.equal(xa, (ya.float() / 3)[:, None])
        # A rearrangement of the same voxels: the class counts are unchanged.
        assert torch.equal(torch.bincount(ya[0].flatten(), minlength=4),
                           torch.bincount(y[0].flatten(), minlength=4))
        seen.add(tuple(ya[0].flatten().tolist()))
    assert len(seen) > 2           # it does change the batch


def test_affine_3d_resamples_consistently_and_replays_from_the_seed():
    y = torch.zeros(1, 16, 16, 16, dtype=torch.long)
    y[:, 4:12, 4:12, 4:12] = 1
    x = y.float()[:, None]
    xa, ya = aug.affine_3d(x, y, torch.Generator().manual_seed(3), gamma_range=(1, 1))
    assert xa.shape == x.shape and ya.shape == y.shape
    assert not torch.equal(ya, y)                   # rotated / zoomed / shifted
    # Image and labels move together: the image is bright where the label is 1.
    assert xa[0, 0][ya[0] == 1].mean() > 0.8 and xa[0, 0][ya[0] == 0].mean() < 0.2
    again = aug.affine_3d(x, y, torch.Generator().manual_seed(3), gamma_range=(1, 1))
    assert torch.equal(again[0], xa) and torch.equal(again[1], ya)
    assert aug.apply("none", x, y, None) == (x, y)
    with pytest.raises(ValueError, match="augment must be"):
        aug.apply("mixup", x, y, None)


def test_the_2d_affine_default_replays_the_first_protocol():
    # finetune.augment is the historical 2D augmentation: same draws, same output.
    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    y = torch.randint(0, 4, (3, 16, 16), generator=torch.Generator().manual_seed(1))
    x = y.float()[:, None] / 3
    a = ft.augment(x, y, gen_a)
    b = aug.apply("affine", x, y, gen_b)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_finetune_config_augment_values():
    assert ft.FinetuneConfig(augment=True).augment == ft.DEFAULT_AUGMENT
    assert ft.FinetuneConfig(augment=False).augment == "none"
    with pytest.raises(ValueError, match="augment must be"):
        ft.FinetuneConfig(augment="elastic")
    args = ft.parser().parse_args([])
    assert args.augment == ft.DEFAULT_AUGMENT
    assert ft.parser().parse_args(["--augment", "flip-rot90"]).augment == "flip-rot90"
    assert ft.parser().parse_args(["--no-augment"]).augment == "none"


# ---- 3D fine-tuning with sliding-window evaluation ---------------------------------------------

def test_3d_finetune_evaluates_by_sliding_windows_of_the_patch(volume, monkeypatch):
    import monai.inferers
    calls = []
    real = monai.inferers.sliding_window_inference

    def spy(inputs, roi_size, *args, **kwargs):
        calls.append((tuple(inputs.shape), tuple(roi_size)))
        return real(inputs, roi_size, *args, **kwargs)

    monkeypatch.setattr(monai.inferers, "sliding_window_inference", spy)
    data = ft.mni3d_task(1, patch=16, volume=volume)
    spec = ft.ModelSpec(model="unet", model_kwargs=TINY_UNET, embed_dim=8, spatial_dims=3)
    r = ft.finetune(data, spec, ft.FinetuneConfig(steps=2, batch=1, warmup_steps=1,
                                                  augment="flip-rot90"))
    assert calls == [(tuple(data.test_image.shape), (16, 16, 16))]
    assert len(r.dice) == 4 and 0.0 <= r.mean_dice <= 1.0
    with pytest.raises(ValueError, match="the model is 2D, the data 3D"):
        ft.finetune(data, ft.ModelSpec(model="unet", model_kwargs=TINY_UNET, embed_dim=8),
                    ft.FinetuneConfig(steps=1))


# ---- budget checkpoints --------------------------------------------------------------------------

def _tiny_config(out, **changes):
    return tr.pretrain_config(tr.QUICK_2D, str(out), **changes)


def test_a_budget_checkpoint_is_the_model_of_a_run_that_short(tmp_path):
    paths = tr.pretrain_budgets(_tiny_config(tmp_path / "curve"), [1, 3])
    straight = train(_tiny_config(tmp_path / "straight", steps=3), quiet=True)
    at3 = torch.load(paths[3], weights_only=True)
    ref = torch.load(straight.checkpoint, weights_only=True)
    assert at3["step"] == 3 and torch.load(paths[1], weights_only=True)["step"] == 1
    assert all(torch.equal(at3["model"][k], v) for k, v in ref["model"].items())
    with pytest.raises(ValueError, match="constant"):
        tr.pretrain_budgets(_tiny_config(tmp_path / "c", schedule="cosine"), [1])


def test_plan_runs_scratch_and_the_largest_budget_under_every_augmentation():
    jobs = tr.plan_jobs([10, 20, 40], seeds=[0, 1], augments=["a", "b"], curve_augment="a")
    assert jobs[:4] == [(0, "a", 0), (0, "a", 1), (0, "b", 0), (0, "b", 1)]
    assert {(40, "a", 0), (40, "b", 1), (10, "a", 1), (20, "a", 0)} <= set(jobs)
    assert not any(b in (10, 20) and a == "b" for b, a, _ in jobs)
    assert len(jobs) == len(set(jobs)) == 4 + 4 + 4


def test_gain_rows_pair_by_seed():
    def row(budget, seed, dice):
        return {"dims": 2, "k": 1, "budget": budget, "samples": budget * 4,
                "augment": "a", "seed": seed, "mean_dice": dice}
    rows = [row(0, 0, 0.5), row(0, 1, 0.6), row(8, 0, 0.55), row(8, 1, 0.58)]
    (g,) = tr.gain_rows(rows, 2, 1, "a")
    assert g["samples"] == 32 and g["wins"] == 1
    assert g["gains"] == pytest.approx([0.05, -0.02])
    assert g["gain"][0] == pytest.approx(0.015)
    assert "| 2D | 1 | a | 8 | 32 |" in tr.gain_table([g])


# ---- load_pretrained -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unet_exports(tmp_path_factory):
    """Exports of 1-step pre-training runs of a tiny UNet, 2D and 3D."""
    out = {}
    for dims, shape in ((2, (16, 16)), (3, (16, 16, 16))):
        folder = tmp_path_factory.mktemp(f"unet{dims}d")
        config = build(dict(shape=shape, num_labels=4, batch=1, steps=1, model="unet",
                            model_kwargs=TINY_UNET, embed_dim=8, lr=1e-3,
                            out=str(folder / "run"), device="cpu"))
        train(config, quiet=True)
        out[dims] = folder / "run" / "export"
    return out


@pytest.mark.parametrize("dims", [2, 3])
def test_load_pretrained_fills_a_monai_unet_but_its_head(unet_exports, dims):
    net = monai_nets.UNet(spatial_dims=dims, in_channels=1, out_channels=3, channels=(4, 8, 16),
                          strides=(2, 2), num_res_units=1)
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    report = load_pretrained(net, unet_exports[dims])
    saved = torch.load(unet_exports[dims] / "network.pt", weights_only=True)
    # Everything but the last up-sampling block (whose output is the head) is loaded.
    assert report.loaded and set(report.skipped) == set(report.missing)
    assert report.skipped and all(k.startswith("model.2.") for k in report.skipped)
    assert all("shape" in why for why in report.skipped.values())
    for k in report.loaded:
        assert torch.equal(net.state_dict()[k], saved[k]), k
    for k in report.missing:
        assert torch.equal(net.state_dict()[k], fresh[k]), k
    assert f"{len(report.skipped)} skipped" in str(report)
    assert net(torch.zeros(1, 1, *(16,) * dims)).shape == (1, 3, *(16,) * dims)
    # The checkpoint loads the same way as the export folder.
    again = load_pretrained(net, unet_exports[dims].parent / "checkpoints" / "last.pt")
    assert again.loaded == report.loaded


def test_rasd_finetune_3d_takes_the_patch_size_of_the_pretraining(unet_exports, tmp_path):
    out = tmp_path / "r.json"
    assert ft.main(["--checkpoint", str(unet_exports[3]), "--data", "mni-tissue-3d", "--k", "1",
                    "--steps", "1", "--batch", "1", "--augment", "flip-rot90", "--quiet",
                    "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["meta"]["patch"] == 16 and result["loaded_tensors"] > 0
    assert ft.main(["--checkpoint", str(unet_exports[2]), "--data", "mni-tissue-3d",
                    "--steps", "1", "--quiet"]) == 2          # a 2D model on 3D data


def test_load_pretrained_refuses_another_architecture(unet_exports):
    other_dims = monai_nets.UNet(spatial_dims=3, in_channels=1, out_channels=3,
                                 channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
    with pytest.raises(ValueError, match="spatial_dims=2"):
        load_pretrained(other_dims, unet_exports[2])
    wider = monai_nets.UNet(spatial_dims=2, in_channels=1, out_channels=3, channels=(8, 16, 32),
                            strides=(2, 2), num_res_units=1)
    with pytest.raises(ValueError, match="fit this network"):
        load_pretrained(wider, unet_exports[2])


def _swin_export(folder, spatial_dims, feature_size=12):
    """The export of an (untrained) SwinUNETR pre-training network."""
    torch.manual_seed(0)
    net = monai_nets.SwinUNETR(in_channels=1, out_channels=32, feature_size=feature_size,
                               spatial_dims=spatial_dims)
    shape = [32] * spatial_dims
    export(net.state_dict(), dict(model="swinunetr", shape=shape, synthesis={}, embed_dim=32,
                                  model_kwargs={"feature_size": feature_size}), 1, str(folder))
    return net.state_dict()


@pytest.mark.parametrize("dims", [2, 3])
def test_load_pretrained_fills_a_swinunetr_but_its_head(tmp_path, dims):
    state = _swin_export(tmp_path, dims)
    net = monai_nets.SwinUNETR(in_channels=1, out_channels=5, feature_size=12,
                               spatial_dims=dims)
    report = load_pretrained(net, tmp_path)
    assert not report.skipped and set(report.missing) == {k for k in net.state_dict()
                                                          if k.startswith("out.")}
    assert all(torch.equal(net.state_dict()[k], state[k]) for k in report.loaded)
    # The encoder file alone lands in swinViT.
    enc = load_pretrained(monai_nets.SwinUNETR(in_channels=1, out_channels=5, feature_size=12,
                                               spatial_dims=dims), tmp_path / "encoder.pt")
    assert enc.loaded and all(k.startswith("swinViT.") for k in enc.loaded)
    assert all(not k.startswith("swinViT.") for k in enc.missing)
    if dims == 2:
        with pytest.raises(ValueError, match="spatial_dims=2"):
            load_pretrained(monai_nets.SwinUNETR(in_channels=1, out_channels=5,
                                                 feature_size=12), tmp_path)


def _readme_block(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(heading)
    return re.search(r"```python\n(.*?)```", text[start:], flags=re.S).group(1)


@pytest.mark.parametrize("dims", [3, 2])
def test_readme_fine_tuning_snippet_runs_as_written(tmp_path, monkeypatch, capsys, dims):
    code = _readme_block("### Fine-tuning from RaSD weights")
    assert "spatial_dims" in code and "load_pretrained" in code
    folder = re.search(r'export = "([^"]+)"', code).group(1)
    monkeypatch.chdir(tmp_path)
    state = _swin_export(tmp_path / folder, dims)
    scope = {"__name__": "__main__"}
    exec(compile(code, "README fine-tuning", "exec"), scope)
    net = scope["net"]
    assert net.swinViT.patch_embed.proj.weight.dim() == dims + 2
    assert torch.equal(net.state_dict()["swinViT.patch_embed.proj.weight"],
                       state["swinViT.patch_embed.proj.weight"])
    assert "0 skipped" in capsys.readouterr().out


def test_transfer_doc_unet_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    text = (ROOT / "docs" / "transfer.md").read_text()
    code = "\n".join(line[3:] for line in re.search(r"```python\n(.*?)```", text,
                                                    flags=re.S).group(1).splitlines())
    folder = re.search(r'load_pretrained\(net, "([^"]+)"\)', code).group(1)
    monkeypatch.chdir(tmp_path)
    setup = tr.SETUP_3D
    source = monai_nets.UNet(spatial_dims=3, in_channels=1, out_channels=setup["embed_dim"],
                             **setup["model_kwargs"])
    export(source.state_dict(), dict(setup, shape=list(setup["shape"]), synthesis={}), 800,
           str(tmp_path / folder))
    exec(compile(code, "docs/transfer.md", "exec"), {"__name__": "__main__"})
    assert "4 skipped" in capsys.readouterr().out


# ---- shortening a run ----------------------------------------------------------------------------

def _cli_args(out, *extra):
    return ["--shape", "16", "16", "--labels", "3", "--batch", "1", "--model-arg",
            "channels=[4, 8, 16]", "--embed-dim", "4", "--schedule", "cosine",
            "--device", "cpu", "--out", str(out), "--quiet", *extra]


def test_stop_at_ends_early_with_an_export_and_resumes_exactly(tmp_path):
    assert pretrain_main(_cli_args(tmp_path / "a", "--steps", "4", "--stop-at", "2")) == 0
    meta = json.loads((tmp_path / "a" / "export" / "export.json").read_text())
    assert meta["step"] == 2
    assert torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["step"] == 2
    # Same cosine schedule: the resumed run ends where a straight one does.
    assert pretrain_main(_cli_args(tmp_path / "a", "--steps", "4", "--resume")) == 0
    assert pretrain_main(_cli_args(tmp_path / "b", "--steps", "4")) == 0
    a = torch.load(tmp_path / "a" / "export" / "network.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "export" / "network.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_stops_after_the_step_with_a_checkpoint_and_an_export(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "python"),
                                                       os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    argv = [sys.executable, "-m", "rasd_pretrain",
            *_cli_args(out, "--steps", "100000", "--log-every", "1")]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)
    log = out / "log.csv"
    # Wait for two logged steps (a busy machine may take minutes), so the signal lands mid-run.
    deadline = time.monotonic() + 600
    while not log.exists() or len(log.read_text().splitlines()) < 3:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run never logged two steps:\n{proc.communicate()[1][-2000:]}")
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "continue with --resume" in err
    step = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"]
    rows = log.read_text().splitlines()[1:]
    assert 2 <= step < 100000 and len(rows) == step
    assert json.loads((out / "export" / "export.json").read_text())["step"] == step


def test_print_config_says_it_does_not_train(tmp_path, capsys):
    out = tmp_path / "never"
    assert pretrain_main(_cli_args(out, "--print-config")) == 0
    captured = capsys.readouterr()
    assert "steps:" in captured.out and "nothing was trained" in captured.err
    assert not out.exists()
    from rasd_pretrain.cli import parser
    assert "without training" in " ".join(parser().format_help().split())


# ---- the GPU-day script, tiny, on the CPU -----------------------------------------------------------

def test_gpu_transfer_quick_prints_one_table(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "python"),
                                                       os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(ROOT / "benches" / "gpu_transfer.py"), "--quick",
                           "--device", "cpu", "--out", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith("| task |") and table[1].startswith("|---")
    tasks = [line.split("|")[1].strip() for line in table[2:]]
    assert tasks == ["2D"] * 3 + ["3D"] * 3, done.stdout          # 3 budgets per task
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {(r["dims"], r["budget"] > 0) for r in rows} == {(2, False), (2, True), (3, False),
                                                           (3, True)}
