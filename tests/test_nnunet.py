"""nnU-Net hand-off: the network of a plans file, pre-trained here, loads into nnU-Net.

Every check runs nnU-Net itself: nnUNetv2_plan_and_preprocess on a tiny dataset in its raw
format, its trainer's network builder, its load_pretrained_weights, and a short nnUNetv2_train
run on the CPU (through tests/nnunet_train_probe.py, which records the weights nnU-Net starts
its first step from). nnU-Net's folders are environment variables pointing into tmp dirs; its
commands run as subprocesses so each reads them fresh.
"""

import copy
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import yaml
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

import rasd_kernels as rk
from rasd_pretrain import cli, nnunet
from rasd_pretrain._deps import MissingDependency
from rasd_pretrain.models import build_model

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
DATASET = "Dataset001_RaSDTiny"
CASES, SIZE, LABELS = 10, 16, 3    # nnU-Net plans a 3-stage U-Net for 16^2


def nnunet_env(root) -> dict:
    """nnU-Net's three folders under `root`, one process per pool, no compilation."""
    return {**os.environ, "nnUNet_raw": str(root / "raw"),
            "nnUNet_preprocessed": str(root / "preprocessed"),
            "nnUNet_results": str(root / "results"), "nnUNet_def_n_proc": "1",
            "nnUNet_compile": "false"}


def write_raw_dataset(folder) -> None:
    """CASES synthetic 2D image/label pairs (SIZE^2, 1 mm) in nnU-Net's raw layout."""
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    image, label = rk.synthesize(CASES, (SIZE, SIZE), LABELS, seed=7, start_index=0,
                                 device="cpu")
    for i in range(CASES):
        sitk.WriteImage(sitk.GetImageFromArray(image[i, 0].numpy()),
                        str(folder / "imagesTr" / f"case_{i:03d}_0000.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(label[i].numpy().astype(np.uint8)),
                        str(folder / "labelsTr" / f"case_{i:03d}.nii.gz"))
    labels = {"background": 0, **{f"tissue{k}": k for k in range(1, LABELS)}}
    (folder / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "synthetic"}, "labels": labels, "numTraining": CASES,
         "file_ending": ".nii.gz"}))


def run(command: list[str], env: dict, timeout: int = 600) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command[:2]} failed:\n{done.stdout[-3000:]}\n" \
                                 f"{done.stderr[-3000:]}"
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A planned and preprocessed nnU-Net dataset: its env and 2d plans file."""
    root = tmp_path_factory.mktemp("nnunet")
    env = nnunet_env(root)
    write_raw_dataset(root / "raw" / DATASET)
    seconds = run([os.path.join(BIN, "nnUNetv2_plan_and_preprocess"), "-d", "1", "-c", "2d",
                   "-np", "1", "-npfp", "1"], env)
    print(f"nnUNetv2_plan_and_preprocess: {seconds:.1f} s")
    plans = root / "preprocessed" / DATASET / "nnUNetPlans.json"
    return {"root": root, "env": env, "plans": str(plans)}


@pytest.fixture(scope="module")
def pretrained(dataset):
    """`rasd-pretrain --nnunet-plans ... --nnunet-configuration 2d` for a few steps."""
    out = dataset["root"] / "rasd"
    start = time.perf_counter()
    code = cli.main(["--nnunet-plans", dataset["plans"], "--nnunet-configuration", "2d",
                     "--steps", "4", "--out", str(out), "--quiet"])
    assert code == 0
    print(f"rasd-pretrain, 4 steps: {time.perf_counter() - start:.1f} s")
    return out / "export" / nnunet.WEIGHTS_NAME


def trainer_network(plans_path: str, configuration: str, num_classes: int) -> torch.nn.Module:
    """The network nnU-Net's trainer builds for this plans configuration (deep supervision on,
    as in training)."""
    manager = PlansManager(plans_path)
    cm = manager.get_configuration(configuration)
    return nnUNetTrainer.build_network_architecture(manager, cm, 1, num_classes, True)


def weights_of(path) -> dict:
    return torch.load(path, weights_only=True)["network_weights"]


# ---- the run's settings and network --------------------------------------------------------

def test_plans_set_shape_batch_channels_and_network(dataset, capsys):
    assert cli.main(["--nnunet-plans", dataset["plans"], "--nnunet-configuration", "2d",
                     "--print-config"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    plan = json.load(open(dataset["plans"]))["configurations"]["2d"]
    assert config["shape"] == plan["patch_size"] == [SIZE, SIZE]
    assert config["batch"] == plan["batch_size"]
    assert config["embed_dim"] == plan["architecture"]["arch_kwargs"]["features_per_stage"][0]
    assert config["model"] == "nnunet" and config["synthesis"] == {"channels": 1}
    assert config["model_kwargs"] == {"plans": dataset["plans"], "configuration": "2d"}


def test_backbone_is_nnunets_network_and_returns_what_the_head_reads(dataset):
    torch.manual_seed(0)
    model = build_model("nnunet", spatial_dims=2, in_channels=1, out_channels=32,
                        shape=(SIZE, SIZE), plans=dataset["plans"], configuration="2d")
    reference = trainer_network(dataset["plans"], "2d", num_classes=2)
    assert type(model.network) is type(reference)
    ours = model.network.state_dict()
    assert {k: v.shape for k, v in ours.items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}

    # With our weights and deep supervision off, nnU-Net's segmentation is its head applied to
    # the features the backbone returns.
    reference.load_state_dict(ours)
    reference.decoder.deep_supervision = False
    x = torch.rand(2, 1, SIZE, SIZE)
    features = model(x)
    assert features.shape == (2, 32, SIZE, SIZE)
    torch.testing.assert_close(model.network.decoder.seg_layers[-1](features), reference(x))


# ---- export: nnU-Net's own loader takes it ---------------------------------------------------

def test_export_loads_with_nnunets_load_pretrained_weights(dataset, pretrained, capsys):
    ours = weights_of(pretrained)
    assert ours and not any(nnunet.HEAD_KEY in k for k in ours)
    network = trainer_network(dataset["plans"], "2d", num_classes=LABELS)
    load_pretrained_weights(network, str(pretrained))
    for key, value in network.state_dict().items():
        if nnunet.HEAD_KEY not in key:
            assert torch.equal(value, ours[key]), key

    assert cli.main(["nnunet-check", str(pretrained), "--nnunet-plans", dataset["plans"],
                     "--nnunet-configuration", "2d"]) == 0
    assert f"{len(ours)} tensors load" in capsys.readouterr().out

    # `rasd-pretrain export` writes the same file from the checkpoint.
    again = dataset["root"] / "again"
    checkpoint = pretrained.parent.parent / "checkpoints" / "last.pt"
    assert cli.main(["export", str(checkpoint), "--out", str(again)]) == 0
    rewritten = weights_of(again / nnunet.WEIGHTS_NAME)
    assert rewritten.keys() == ours.keys()
    assert all(torch.equal(rewritten[k], ours[k]) for k in ours)


def test_nnunet_train_starts_from_the_pretrained_weights(dataset, pretrained):
    # nnUNetv2_train DATASET 2d 0 -tr nnUNetTrainer_1epoch -device cpu -pretrained_weights FILE
    snapshot = dataset["root"] / "first_step.pt"
    env = {**dataset["env"], "nnUNet_n_proc_DA": "0"}     # augment in the process itself
    seconds = run([sys.executable, os.path.join(HERE, "nnunet_train_probe.py"), str(snapshot),
                   "1", "2d", "0", "-tr", "nnUNetTrainer_1epoch", "-device", "cpu",
                   "-pretrained_weights", str(pretrained)], env)
    print(f"nnUNetv2_train, 1 epoch on the CPU: {seconds:.1f} s")

    ours, start = weights_of(pretrained), torch.load(snapshot, weights_only=True)
    body = [k for k in start if nnunet.HEAD_KEY not in k]
    assert sorted(body) == sorted(ours)
    for key in body:
        assert torch.equal(start[key], ours[key]), key
    # nnU-Net's own heads (3 classes) start fresh; its training then moved every weight.
    assert start["decoder.seg_layers.0.weight"].shape[0] == LABELS
    final = dataset["root"] / "results" / DATASET / "nnUNetTrainer_1epoch__nnUNetPlans__2d" / \
        "fold_0" / "checkpoint_final.pth"
    trained = torch.load(final, map_location="cpu", weights_only=False)["network_weights"]
    assert all(not torch.equal(trained[k], ours[k]) for k in body
               if k.endswith(".conv.weight"))


# ---- a plan without a dataset ------------------------------------------------------------------

def test_default_plans_3d_pretrain_and_load(tmp_path, capsys):
    assert cli.main(["nnunet-default-plans", "--shape", "32", "32", "32",
                     "--out", str(tmp_path / "plans")]) == 0
    assert "3d_fullres: ResidualEncoderUNet, patch [32, 32, 32]" in capsys.readouterr().out
    plans = str(tmp_path / "plans" / "nnUNetResEncUNetMPlans.json")
    assert json.load(open(plans))["experiment_planner_used"] == nnunet.DEFAULT_PLANNER

    assert cli.main(["--nnunet-plans", plans, "--nnunet-configuration", "3d_fullres",
                     "--steps", "2", "--labels", "4", "--out", str(tmp_path / "run"),
                     "--quiet"]) == 0
    exported = tmp_path / "run" / "export" / nnunet.WEIGHTS_NAME
    network = trainer_network(plans, "3d_fullres", num_classes=5)
    load_pretrained_weights(network, str(exported))
    ours = weights_of(exported)
    for key, value in network.state_dict().items():
        if nnunet.HEAD_KEY not in key:
            assert torch.equal(value, ours[key]), key
    meta = json.load(open(tmp_path / "run" / "export" / "export.json"))
    assert meta["configuration"] == "3d_fullres" and meta["patch_size"] == [32, 32, 32]


# ---- bad input -----------------------------------------------------------------------------------

def test_a_file_that_is_not_nnunet_plans_is_refused(tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"model": "unet", "layers": 4}))
    broken = tmp_path / "broken.json"
    broken.write_text("configurations: 2d")
    for path, says in ((other, "is not an nnU-Net v2 plans file (it has no 'plans_name'"),
                       (broken, "is not an nnU-Net plans file (not JSON")):
        assert cli.main(["--nnunet-plans", str(path), "--nnunet-configuration", "2d",
                         "--print-config"]) == 2
        assert f"{path} {says}" in capsys.readouterr().err


def test_a_configuration_missing_from_the_plans_is_refused(dataset, capsys):
    assert cli.main(["--nnunet-plans", dataset["plans"], "--nnunet-configuration",
                     "3d_fullres", "--print-config"]) == 2
    assert f"configuration '3d_fullres' is not in {dataset['plans']}; it has ['2d']" in \
        capsys.readouterr().err


def test_flags_that_contradict_the_plans_are_refused(dataset, capsys):
    assert cli.main(["--nnunet-plans", dataset["plans"], "--print-config"]) == 2
    assert "--nnunet-plans and --nnunet-configuration go together" in capsys.readouterr().err
    assert cli.main(["--nnunet-plans", dataset["plans"], "--nnunet-configuration", "2d",
                     "--model", "unet", "--print-config"]) == 2
    assert "--nnunet-plans sets the network; drop ['model']" in capsys.readouterr().err


def test_weights_from_other_plans_name_the_first_differing_key(dataset, pretrained, tmp_path,
                                                               capsys):
    plans = json.load(open(dataset["plans"]))
    narrow = copy.deepcopy(plans)
    arch = narrow["configurations"]["2d"]["architecture"]["arch_kwargs"]
    arch["features_per_stage"] = [n // 2 for n in arch["features_per_stage"]]
    (tmp_path / "narrow").mkdir()
    other = tmp_path / "narrow" / "nnUNetPlans.json"
    other.write_text(json.dumps(narrow))

    assert cli.main(["nnunet-check", str(pretrained), "--nnunet-plans", str(other),
                     "--nnunet-configuration", "2d"]) == 2
    err = capsys.readouterr().err
    assert (f"does not fit the network of {other} (2d): key encoder.stages.0.0.convs.0.conv."
            "weight has shape [32, 1, 3, 3] in the weights, [16, 1, 3, 3] in the network") in err
    assert f"they were built from {dataset['plans']}, configuration 2d" in err
    # nnU-Net's own loader refuses the same file for that network.
    with pytest.raises(AssertionError, match="encoder.stages.0.0.convs.0.conv.weight"):
        load_pretrained_weights(trainer_network(str(other), "2d", LABELS), str(pretrained))


def test_missing_nnunet_names_the_extra(dataset, monkeypatch):
    for name in [m for m in sys.modules if m == "nnunetv2" or m.startswith("nnunetv2.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependency, match=r"pip install 'rasd_kernels\[nnunet\]'"):
        nnunet.read_plan(dataset["plans"], "2d")


def test_the_mni_comparison_script_runs_nnunets_trainer_on_both_inits(tmp_path):
    """benches/nnunet_finetune_experiment.py --quick: nnU-Net plans the MNI152 task, a 2-step
    pre-training, one scratch and one pre-trained nnU-Net run (the child checks that nnU-Net
    loaded every pre-trained tensor), Dice from nnU-Net's own predictions."""
    script = os.path.join(os.path.dirname(HERE), "benches", "nnunet_finetune_experiment.py")
    done = subprocess.run([sys.executable, script, "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(r["init"] for r in rows) == ["pretrained", "scratch"]
    assert all(len(r["dice"]) == 4 and 0 <= r["mean_dice"] <= 1 for r in rows)
    splits = json.loads((tmp_path / "preprocessed" / "Dataset501_MNITissue" /
                         "splits_final.json").read_text())
    assert [len(s["train"]) for s in splits] == [1, 2, 5]
    assert all(not set(s["train"]) & set(s["val"]) for s in splits)
    for r in rows:      # the segmentations scored are nnU-Net's, one per test slice
        run = tmp_path / "runs" / f"k1_s0_{r['init']}"
        predicted = sorted(run.glob("Dataset501_MNITissue/*/fold_0/validation/*.nii.gz"))
        assert [p.name.split(".")[0] for p in predicted] == sorted(splits[0]["val"])
    table = [line for line in done.stdout.splitlines() if line.startswith("| 1 |")]
    assert [line.split("|")[2].strip() for line in table] == ["scratch", "pretrained"]
