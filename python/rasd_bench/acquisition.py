"""The cost of each acquisition option (SPEC 9), beside the same idea in TorchIO and MONAI.

For a workload, ours is timed stage by stage (rasd_kernels.stages) on the same samples every
call: the label maps and the images with every option off, then the stage an option acts in
with that option always on (probability 1): thick slices, low resolution and background
clearing in the images, the published border in the label maps. The option's cost is the
difference, also given as a multiple of the full pipeline without options. TorchIO's
RandomAnisotropy (one axis downsampled and resampled back) and MONAI's
RandSimulateLowResolution (downsampled and resampled back on every axis) are timed on the same
images, one sample after another as their transforms take them: the work they add to a
pipeline that already has its images.
"""

from __future__ import annotations

import torch

from rasd_kernels import params, stages, synthesize_into
from rasd_kernels.config import SynthesisConfig

from . import timing
from .timing import Case, CorrectnessError

OPTIONS = {
    "thick slices": dict(thick_slice_prob=1.0, thick_slice_stride_min=2,
                         thick_slice_stride_max=6, thick_slice_axes=(0,)),
    "low resolution": dict(lowres_prob=1.0, lowres_voxel_min=2.0, lowres_voxel_max=4.0),
    "background clearing": dict(clear_background_prob=1.0),
    "border zeros": dict(border="zeros"),
}


def _check_image(out, batch: int, shape) -> str:
    image = out[0] if isinstance(out, tuple) else out
    if tuple(image.shape[:1]) != (batch,) or tuple(image.shape[-len(shape):]) != tuple(shape):
        raise CorrectnessError(f"image of shape {tuple(image.shape)}")
    if not bool(torch.isfinite(image).all()):
        raise CorrectnessError("image has non-finite values")
    return "finite image of the workload's shape"


# The stage each option acts in: border zeros in the label maps, the others in the images.
STAGE_OF = {"border zeros": "labels", "thick slices": "images", "low resolution": "images",
            "background clearing": "images"}


def our_cases(w, backend: str, device, seed: int) -> list[Case]:
    """Each stage with no option, then each option's stage with the option on: the same
    samples every call (one workspace), so that what differs is the option alone."""
    B, S, K = w.batch, w.shape, w.num_labels
    image = torch.empty(B, w.config.channels, *S, device=device)
    label = torch.empty(B, *S, dtype=torch.uint8, device=device)
    baseline = config_with_defaults(w.config)
    ws = params.make_workspace(B, S, K, w.config.channels, baseline, device)
    torch.arange(B, out=ws.sample_index)
    stages.draw_labels(ws, label, baseline, seed, backend)
    scratch = torch.empty_like(label)   # label-stage runs write here; `label` feeds the images
    cases = []
    for name, stage, config in [("no option", "labels", baseline),
                                ("no option", "images", baseline),
                                *[(option, STAGE_OF[option], baseline.replace(**changes))
                                  for option, changes in OPTIONS.items()]]:
        if stage == "labels":
            def run(config=config):
                return stages.draw_labels(ws, scratch, config, seed, backend)
        else:
            def run(config=config):
                return stages.draw_images(ws, image, label, config, seed, backend)
        cases.append(Case(f"rasd-{backend}", f"{name} ({stage})", B, device, run,
                          lambda out: _check_image(out, B, S)))
    return cases


def alternative_cases(w, images: torch.Tensor) -> list[Case]:
    """TorchIO RandomAnisotropy and MONAI RandSimulateLowResolution on our images [B, C, *S]
    (3D: TorchIO works on volumes only)."""
    B, S = w.batch, w.shape
    cases = []
    if len(S) == 3:
        try:
            import torchio as tio
        except ImportError:
            tio = None
        if tio is not None:
            anisotropy = tio.RandomAnisotropy(axes=(0,), downsampling=(2, 6))
            subjects = [tio.Subject(image=tio.ScalarImage(tensor=x.cpu())) for x in images]

            def run_tio():
                return torch.stack([anisotropy(s).image.data for s in subjects])

            cases.append(Case("torchio", "RandomAnisotropy", B, torch.device("cpu"), run_tio,
                              lambda out: _check_image(out, B, S)))
    try:
        from monai.transforms import RandSimulateLowResolution
    except ImportError:
        return cases
    lowres = RandSimulateLowResolution(prob=1.0, zoom_range=(0.25, 0.5),
                                       upsample_mode="trilinear" if len(S) == 3 else "bilinear")
    lowres.set_random_state(0)

    def run_monai():
        return torch.stack([torch.as_tensor(lowres(x)) for x in images])

    cases.append(Case("monai", "RandSimulateLowResolution", B, images.device, run_monai,
                      lambda out: _check_image(out, B, S)))
    return cases


def _ms_per_batch(case: Case, **protocol) -> float:
    result = timing.run_case(case, **protocol)
    return 1e3 * case.batch / result.measurement.samples_per_s()


def option_records(w, backend: str, device, seed: int, *, log, **protocol) -> list[dict]:
    """One record per case: ms per batch of its stage, and what it adds to (and is as a
    multiple of) our full pipeline with no option (the two stages' baselines together)."""
    records, base = [], {}
    for case in our_cases(w, backend, device, seed):
        ms = _ms_per_batch(case, **protocol)
        option, stage = case.stage.rsplit(" (", 1)
        stage = stage.rstrip(")")
        base.setdefault(stage, ms)
        records.append(dict(preset=w.preset, tool=case.tool, option=option, stage=stage,
                            batch=case.batch, ms_per_batch=ms, extra_ms=ms - base[stage]))
        log(f"{w.preset} {case.stage:<32} {case.tool:<10} {ms:9.1f} ms per batch")
    full = base["labels"] + base["images"]
    image = torch.empty(w.batch, w.config.channels, *w.shape, device=device)
    label = torch.empty(w.batch, *w.shape, dtype=torch.uint8, device=device)
    synthesize_into(image, label, num_labels=w.num_labels, seed=seed, config=w.config,
                    backend=backend)
    for case in alternative_cases(w, image):
        ms = _ms_per_batch(case, **protocol)
        records.append(dict(preset=w.preset, tool=case.tool, option=case.stage,
                            stage="transform", batch=case.batch, ms_per_batch=ms, extra_ms=ms))
        log(f"{w.preset} {case.stage:<32} {case.tool:<10} {ms:9.1f} ms per batch")
    for r in records:
        r["relative"] = (full + r["extra_ms"]) / full
    return records


def format_options(records: list[dict]) -> str:
    """The table: per preset, what each option adds to our full pipeline, and what the
    alternatives' transforms take on the same batch."""
    lines = ["| preset | option | tool | stage | ms per batch | added ms | x full pipeline |",
             "| --- | --- | --- | --- | ---: | ---: | ---: |"]
    for r in records:
        lines.append(f"| {r['preset']} | {r['option']} | {r['tool']} | {r['stage']} | "
                     f"{r['ms_per_batch']:.1f} | {r['extra_ms']:+.1f} | {r['relative']:.3f} |")
    return "\n".join(lines)


def config_with_defaults(config: SynthesisConfig) -> SynthesisConfig:
    """Every option off (the baseline of the table), whatever the preset turns on."""
    return config.replace(thick_slice_prob=0.0, lowres_prob=0.0, clear_background_prob=0.0,
                          border="edge")
