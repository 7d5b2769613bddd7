"""Run one stage from the recipe: build its inputs, train through the shared loop, write its file.

Every stage reads and writes inside a run directory::

    RUN/stage0.pt stage1.pt stage2.pt student.pt species.npz   the outputs
    RUN/state/<stage>.pt                                        resume state (killed runs)
    RUN/metrics/<stage>.jsonl .csv .png                         loss curves
    RUN/metrics/eval.jsonl                                      quick Top-1 per stage

A stage whose output exists is complete; a stage with a state file resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from biovita.errors import ConfigError
from trainer.bank import build_bank
from trainer.checkpoint import save_student
from trainer.config import TrainConfig
from trainer.data import EpochSampler, SpeciesData, load_species_data
from trainer.distributed import DistContext
from trainer.embed import Embedder, load_embedder
from trainer.evaluate import quick_eval
from trainer.loop import LoopConfig, LoopResult, train
from trainer.models.compact import CompactAudioTower, CompactConfig, count_parameters
from trainer.models.encoders import (
    AudioTeacher,
    ClapAudioModelWithProjection,
    CnnAudioTeacher,
    ImageText,
    load_clap_audio,
    load_image_text,
    tiny_clap_audio_config,
    tiny_image_text,
)
from trainer.models.vita import VitaModel
from trainer.schedule import RampGuard
from trainer.tasks import DistillTask, Stage0Task, VitaTask

log = logging.getLogger(__name__)

STAGES = ("stage0", "stage1", "stage2", "distill", "bank")
OUTPUTS = {
    "stage0": "stage0.pt",
    "stage1": "stage1.pt",
    "stage2": "stage2.pt",
    "distill": "student.pt",
    "bank": "species.npz",
}


def load_data(cfg: TrainConfig, splits: list[str] | None = None, image_splits=None) -> SpeciesData:
    if cfg.data.manifest is None:
        raise ConfigError("no training data given", hint="pass --world DIR or --manifest CSV")
    return load_species_data(
        cfg.data.manifest,
        splits or cfg.data.train_splits,
        cfg.data.taxa,
        image_splits,
        cache_audio=cfg.data.cache_audio,
    )


def image_text_from(source: str, cfg: TrainConfig) -> ImageText:
    """``tiny`` (from scratch), a stage checkpoint ``.pt``, or an open_clip directory / hub id."""
    if source == "tiny":
        m = cfg.model
        return tiny_image_text(
            m.embed_dim, m.image_size, width=m.image_text_width, layers=m.image_text_layers
        )
    if source.endswith(".pt"):
        return VitaModel.load(source)[0].image_text
    return load_image_text(source)


def new_audio_teacher(cfg: TrainConfig, embed_dim: int) -> AudioTeacher | CnnAudioTeacher:
    """``tiny`` (HTS-AT from scratch), ``tiny-cnn`` (see CnnAudioTeacher), or a CLAP dir / id."""
    m = cfg.model
    if m.audio == "tiny-cnn":
        backbone = CompactConfig.from_dict(
            {**m.cnn_teacher, "frontend": m.audio_frontend_spec().model_dump()}
        )
        return CnnAudioTeacher(CompactAudioTower(backbone), embed_dim)
    if m.audio == "tiny":
        clap_cfg = tiny_clap_audio_config(
            hidden=m.audio_hidden,
            depths=tuple(m.audio_depths),
            projection_dim=m.audio_projection_dim,
            patch=m.audio_patch,
        )
        clap = ClapAudioModelWithProjection(clap_cfg)
    else:
        clap = load_clap_audio(m.audio)
    return AudioTeacher(clap, embed_dim, m.audio_frontend_spec(), m.repeat_to_frames)


def _sampler(data: SpeciesData, loop: LoopConfig, dist: DistContext, unit="clips") -> EpochSampler:
    return EpochSampler(
        data,
        loop.batch_size,
        loop.per_species,
        loop.seed,
        dist.rank,
        dist.world_size,
        unit,
        min_per_species=loop.min_per_species,
    )


def _train(task, loop: LoopConfig, run: Path, dist: DistContext, stop_after) -> LoopResult:
    return train(
        task,
        loop,
        run / "state" / f"{task.name}.pt",
        run / "metrics" / f"{task.name}.jsonl",
        dist,
        stop_after,
    )


def _meta(cfg: TrainConfig, stage: str, result: LoopResult, **extra) -> dict:
    return {
        "stage": stage,
        "recipe": cfg.model_dump(mode="json"),
        "step": result.step,
        "train_seconds": round(result.seconds, 2),
        "final_losses": result.last,
        **extra,
    }


def _record_eval(run: Path, stage: str, embedder: Embedder, cfg: TrainConfig) -> dict:
    """The quick evaluation, on every rank (each embeds a share); rank 0 writes it down."""
    data = load_data(cfg, [cfg.data.eval_split], image_splits=cfg.data.train_splits)
    scores = {"stage": stage, **quick_eval(embedder, data)}
    if embedder.dist.is_main:
        with (run / "metrics" / "eval.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(scores) + "\n")
        log.info("%s: quick eval %s", stage, scores)
    return scores


def run_stage0(cfg: TrainConfig, run: Path, dist: DistContext, stop_after=None) -> Path | None:
    """CLIP-style pre-training of the image/text towers on the data's image-prompt pairs."""
    loop = cfg.stage0.loop
    data = load_data(cfg)
    torch.manual_seed(cfg.seed)
    vita = VitaModel(image_text_from(cfg.model.image_text, cfg))
    task = Stage0Task(vita, data, _sampler(data, loop, dist, unit="images"))
    result = _train(task, loop, run, dist, stop_after)
    if result.step < loop.steps or not dist.is_main:
        return None
    return vita.save(run / OUTPUTS["stage0"], _meta(cfg, "stage0", result))


def run_vita_stage(
    stage: str,
    cfg: TrainConfig,
    run: Path,
    dist: DistContext,
    init: str | None = None,
    stop_after=None,
) -> Path | None:
    """Stage 1 (ATC) or Stage 2 (ATC + ramped AIC/ITC) from ``init``.

    Stage 1's ``init`` is the image-text model (default RUN/stage0.pt, or e.g.
    ``hf-hub:imageomics/bioclip-2``) and gets a new audio tower; Stage 2's is RUN/stage1.pt, or
    with ``from_stage1 = false`` (the no-Stage-1 ablation) the image-text model again.
    """
    s2 = cfg.stage2
    fresh_audio = stage == "stage1" or not s2.from_stage1
    default_init = OUTPUTS["stage0"] if fresh_audio else OUTPUTS["stage1"]
    init = init or str(run / default_init)
    torch.manual_seed(cfg.seed + (1 if stage == "stage1" else 2))
    if fresh_audio:
        image_text = image_text_from(init, cfg)
        vita = VitaModel(image_text, new_audio_teacher(cfg, image_text.embed_dim))
    else:
        vita, _ = VitaModel.load(init)
    vita.to(dist.device)  # the frozen towers' caches are computed there
    data = load_data(cfg)
    if stage == "stage1":
        loop, ramp, text_lr = cfg.stage1.loop, None, 0.0
    else:
        loop, text_lr = s2.loop, s2.text_lr_scale
        targets = {"aic": s2.lambda_aic, "itc": s2.lambda_itc}
        ramp = RampGuard(
            targets, s2.ramp_steps, s2.guard_tolerance, warmup_steps=s2.guard_warmup_steps
        )
    task = VitaTask(stage, vita, data, _sampler(data, loop, dist), ramp, text_lr)
    result = _train(task, loop, run, dist, stop_after)
    if result.step < loop.steps:
        return None
    path = None
    if dist.is_main:
        extra = {"init": init}
        if ramp is not None:
            extra["ramp"] = ramp.state_dict()
        path = vita.save(run / OUTPUTS[stage], _meta(cfg, stage, result, **extra))
    # Every rank holds the same trained weights: all of them evaluate, each one share.
    _record_eval(run, stage, Embedder(stage, vita, None, vita.audio.frontend, dist=dist), cfg)
    return path


def run_distill(
    cfg: TrainConfig, run: Path, dist: DistContext, teacher: str | None = None, stop_after=None
) -> Path | None:
    d = cfg.distill
    teacher_path = Path(teacher or run / OUTPUTS["stage2"])
    vita, _ = VitaModel.load(teacher_path)
    if vita.audio is None:
        raise ConfigError(f"{teacher_path} has no audio tower", hint="distil from stage2.pt")
    vita.to(dist.device)  # its cached targets and species texts are computed there
    torch.manual_seed(cfg.seed + 3)
    student_cfg = CompactConfig.from_dict(
        {**d.student, "embed_dim": vita.embed_dim, "frontend": d.student_frontend().model_dump()}
    )
    student = CompactAudioTower(student_cfg)
    n_student, n_teacher = count_parameters(student), count_parameters(vita.audio)
    if n_student > d.max_param_ratio * n_teacher:
        raise ConfigError(
            f"the student has {n_student:,} parameters, more than {d.max_param_ratio} of the "
            f"teacher's {n_teacher:,}",
            hint="shrink distill.student (blocks, head_channels) or raise distill.max_param_ratio",
        )
    data = load_data(cfg)
    task = DistillTask(student, vita, data, _sampler(data, d.loop, dist), d.weights)
    result = _train(task, d.loop, run, dist, stop_after)
    if result.step < d.loop.steps:
        return None
    embedder = Embedder("student", vita, student, student_cfg.frontend, dist=dist)
    if not dist.is_main:
        _record_eval(run, "student", embedder, cfg)
        return None
    # Relative when beside the student, so a run directory can be moved as a whole.
    out = run / OUTPUTS["distill"]
    try:
        teacher_ref = str(teacher_path.resolve().relative_to(out.parent.resolve()))
    except ValueError:
        teacher_ref = str(teacher_path.resolve())
    meta = _meta(
        cfg,
        "distill",
        result,
        teacher_checkpoint=teacher_ref,
        student_parameters=n_student,
        teacher_audio_parameters=n_teacher,
        parameter_ratio=round(n_student / n_teacher, 4),
    )
    path = save_student(out, student, meta)
    _record_eval(run, "student", embedder, cfg)
    return path


def run_bank(
    cfg: TrainConfig, run: Path, checkpoint: str | None = None, dist: DistContext | None = None
) -> Path | None:
    """The species bank; under torchrun every rank embeds a share and rank 0 writes it."""
    dist = dist or DistContext()
    checkpoint = checkpoint or str(run / OUTPUTS["stage2"])
    data = load_data(cfg, image_splits=cfg.bank.image_splits)
    bank = build_bank(load_embedder(checkpoint, dist=dist), data, cfg.bank.image_weight)
    return bank.save(run / OUTPUTS["bank"]) if dist.is_main else None


def ablation_configs(cfg: TrainConfig) -> dict[str, TrainConfig]:
    """The paper's Stage 2 ablations, each one switch away from the recipe.

    ``no_stage1`` trains Stage 2 directly from the image-text model for the steps of Stage 1 and
    Stage 2 together, so it gets the same compute as the full recipe.
    """
    s2 = cfg.stage2
    both = cfg.stage1.loop.steps + s2.loop.steps
    no_stage1 = s2.model_copy(
        update={"from_stage1": False, "loop": s2.loop.model_copy(update={"steps": both})}
    )
    return {
        "no_stage1": cfg.model_copy(update={"stage2": no_stage1}),
        "no_aic": cfg.model_copy(update={"stage2": s2.model_copy(update={"lambda_aic": 0.0})}),
        "no_itc": cfg.model_copy(update={"stage2": s2.model_copy(update={"lambda_itc": 0.0})}),
    }


def run_ablations(cfg: TrainConfig, run: Path, dist: DistContext) -> dict[str, float]:
    """RUN/ablations/<name>/stage2.pt for each ablation, from the run's stage0.pt / stage1.pt."""
    seconds = {}
    for name, variant in ablation_configs(cfg).items():
        out = run / "ablations" / name
        if (out / OUTPUTS["stage2"]).is_file():
            continue
        out.mkdir(parents=True, exist_ok=True)
        init = run / (OUTPUTS["stage1"] if variant.stage2.from_stage1 else OUTPUTS["stage0"])
        started = time.perf_counter()
        run_vita_stage("stage2", variant, out, dist, init=str(init))
        seconds[name] = round(time.perf_counter() - started, 1)
    return seconds


def run_pipeline(cfg: TrainConfig, run: Path, dist: DistContext) -> dict[str, float]:
    """Every stage in order; completed stages are skipped, interrupted ones resume."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(cfg.model_dump_json(indent=2), encoding="utf-8")
    seconds = {}
    steps = {
        "stage0": lambda: run_stage0(cfg, run, dist),
        "stage1": lambda: run_vita_stage("stage1", cfg, run, dist),
        "stage2": lambda: run_vita_stage("stage2", cfg, run, dist),
        "distill": lambda: run_distill(cfg, run, dist),
        "bank": lambda: run_bank(cfg, run, dist=dist),
    }
    for stage, step in steps.items():
        if (run / OUTPUTS[stage]).is_file():
            log.info("%s: %s exists, skipped", stage, OUTPUTS[stage])
            continue
        started = time.perf_counter()
        step()
        dist.barrier()
        seconds[stage] = round(time.perf_counter() - started, 1)
    return seconds
