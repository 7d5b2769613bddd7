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
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from biovita.errors import ConfigError, ManifestError
from biovita.frontend import FrontendSpec
from biovita.manifest import read_manifest, read_taxa
from trainer.bank import build_bank
from trainer.checkpoint import save_student
from trainer.config import TrainConfig
from trainer.data import EpochSampler, SpeciesData, load_species_data, load_taxa_data
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
from trainer.schedule import EmaGate, RampGuard
from trainer.tasks import (
    DistillTask,
    FixedWeights,
    RampedWeights,
    Stage0Task,
    TemperaturePlan,
    TrainablePlan,
    VitaTask,
    measure_atc_baseline,
)
from trainer.unlabelled import StreamedAudio, StreamSampler, find_recordings, manifest_recordings
from trainer.views import View

log = logging.getLogger(__name__)

STAGES = ("stage0", "stage1", "stage2", "distill", "bank")
OUTPUTS = {
    "stage0": "stage0.pt",
    "stage1": "stage1.pt",
    "stage2": "stage2.pt",
    "distill": "student.pt",
    "bank": "species.npz",
    "stage2_warmup": "stage2_warmup.pt",  # the paper recipe's Phase 1, inside stage 2
}


def load_data(
    cfg: TrainConfig, splits: list[str] | None = None, image_splits=None, frontend=None
) -> SpeciesData:
    if cfg.data.manifest is None:
        raise ConfigError("no training data given", hint="pass --world DIR or --manifest CSV")
    return load_species_data(
        cfg.data.manifest,
        splits or cfg.data.train_splits,
        cfg.data.taxa,
        image_splits,
        frontend,
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


def _sampler(
    data: SpeciesData,
    loop: LoopConfig,
    dist: DistContext,
    unit="clips",
    seed_offset: int = 0,
    teacher_view: View | None = None,
) -> EpochSampler:
    return EpochSampler(
        data,
        loop.batch_size,
        loop.per_species,
        loop.seed + seed_offset,
        dist.rank,
        dist.world_size,
        unit,
        min_per_species=loop.min_per_species,
        teacher_view=teacher_view,
    )


def in_steps(loop: LoopConfig, sampler: EpochSampler) -> LoopConfig:
    """``loop`` with ``epochs`` turned into optimiser steps of this sampler (per rank)."""
    if loop.epochs is None:
        return loop
    per_step = loop.batch_size * loop.grad_accum
    steps = max(1, math.ceil(loop.epochs * sampler.epoch_length / per_step))
    return loop.model_copy(update={"steps": steps, "epochs": None})


def _train(task, loop: LoopConfig, run: Path, dist: DistContext, stop_after) -> LoopResult | None:
    """Train ``task``; its result once every step is done, None while it is not."""
    loop = in_steps(loop, task.sampler)
    result = train(
        task,
        loop,
        run / "state" / f"{task.name}.pt",
        run / "metrics" / f"{task.name}.jsonl",
        dist,
        stop_after,
    )
    return result if result.step >= loop.steps else None


def _meta(cfg: TrainConfig, stage: str, result: LoopResult, **extra) -> dict:
    return {
        "stage": stage,
        "recipe": cfg.model_dump(mode="json"),
        "step": result.step,
        "train_seconds": round(result.seconds, 2),
        "final_losses": result.last,
        **extra,
    }


def _record_eval(run: Path, stage: str, embedder: Embedder, cfg: TrainConfig) -> dict | None:
    """Quick Top-1 on the manifest's labelled eval split, in the tower's own view, on every rank
    (each embeds a share); rank 0 writes it down. Skipped (None) where there is no such split,
    e.g. distillation on unlabelled recordings only."""
    if cfg.data.manifest is None:
        log.info("%s: no manifest, so no labelled split to evaluate on", stage)
        return None
    try:
        data = load_data(
            cfg, [cfg.data.eval_split], cfg.data.train_splits, frontend=embedder.frontend
        )
    except ManifestError as err:
        log.info("%s: not evaluated: %s", stage, err)
        return None
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
    if result is None or not dist.is_main:
        return None
    return vita.save(run / OUTPUTS["stage0"], _meta(cfg, "stage0", result))


def image_text_is_pretrained(cfg: TrainConfig) -> bool:
    """A hub id, an open_clip folder or a checkpoint: anything but the from-scratch ``tiny``."""
    return cfg.model.image_text != "tiny"


def manifest_has_images(cfg: TrainConfig) -> bool:
    if cfg.data.manifest is None:
        raise ConfigError("no training data given", hint="pass --world DIR or --manifest CSV")
    rows = read_manifest(cfg.data.manifest)
    return any(r.image_paths for r in rows if r.split in cfg.data.train_splits)


def image_text_init(cfg: TrainConfig, run: Path) -> str:
    """Where a new audio tower's image/text towers come from: the pretrained model itself, or
    the run's Stage 0 when they are trained from scratch."""
    return cfg.model.image_text if image_text_is_pretrained(cfg) else str(run / OUTPUTS["stage0"])


def _stage2_plan(s2) -> tuple[TrainablePlan, TemperaturePlan]:
    plan = TrainablePlan(
        train_text=True,
        text_lr_scale=s2.text_lr_scale,
        text_weight_decay=s2.text_weight_decay,
        audio_lr_scale=s2.audio_lr_scale,
        audio_weight_decay=s2.audio_weight_decay,
        audio_trainable=None if s2.audio_trainable is None else tuple(s2.audio_trainable),
        audio_unfreeze_step=s2.audio_unfreeze_step,
        no_decay_norm_bias=s2.no_decay_norm_bias,
    )
    t = s2.temperature
    return plan, TemperaturePlan(t.shared, t.reset_to, t.learnable)


def _stage2_weights(s2) -> RampedWeights:
    targets = {"aic": s2.lambda_aic, "itc": s2.lambda_itc}
    if s2.gate is None:
        if s2.itc_ramp_steps not in (None, s2.ramp_steps):
            raise ConfigError(
                "stage2.itc_ramp_steps needs stage2.gate (the ramp guard ramps both together)",
                hint="set stage2.gate, or leave itc_ramp_steps unset",
            )
        guard = RampGuard(
            targets, s2.ramp_steps, s2.guard_tolerance, warmup_steps=s2.guard_warmup_steps
        )
        return RampedWeights(guard)
    g = s2.gate
    ramps = {
        "aic": s2.ramp_steps,
        "itc": s2.ramp_steps if s2.itc_ramp_steps is None else s2.itc_ramp_steps,
    }
    gate = EmaGate(
        targets, ramps, g.disable_above, g.enable_below, g.ema_alpha, g.cool_steps, g.hinge_weight
    )
    return RampedWeights(gate)


def _warm_up(
    cfg: TrainConfig, run: Path, dist: DistContext, vita: VitaModel, data: SpeciesData, stop_after
) -> VitaModel | None:
    """The paper's Stage 2 Phase 1 -> RUN/stage2_warmup.pt (None while it is not complete)."""
    w = cfg.stage2.warmup
    path = run / OUTPUTS["stage2_warmup"]
    if path.is_file():
        return VitaModel.load(path)[0]
    weights = FixedWeights({"atc": w.atc_weight, "aic": w.aic_weight})
    temperature = TemperaturePlan(shared=w.shared_temperature)
    sampler = _sampler(data, w.loop, dist)
    task = VitaTask("stage2_warmup", vita, data, sampler, weights, temperature=temperature)
    result = _train(task, w.loop, run, dist, stop_after)
    if result is None:
        return None
    if dist.is_main:
        vita.save(path, _meta(cfg, "stage2_warmup", result))
    return vita


def _gate_baseline(
    task: VitaTask, batches: int, data: SpeciesData, loop: LoopConfig, dist: DistContext
) -> None:
    """Start the EMA gate at the ATC of a few batches (drawn apart from the training stream, so
    a resumed run draws the same training batches), averaged over the ranks."""
    task.to(dist.device)
    sampler = _sampler(data, loop, dist, seed_offset=1_000_003)
    baseline = measure_atc_baseline(task, sampler, batches)
    gate_baseline = dist.mean({"atc": baseline})["atc"]
    task.loss_weights.schedule.start(gate_baseline)
    log.info("stage2: ATC baseline %.4f for the EMA gate", gate_baseline)


def run_vita_stage(
    stage: str,
    cfg: TrainConfig,
    run: Path,
    dist: DistContext,
    init: str | None = None,
    stop_after=None,
) -> Path | None:
    """Stage 1 (ATC) or Stage 2 (ATC + ramped AIC/ITC, after the warm-up if the recipe has one)
    from ``init``.

    Stage 1's ``init`` is the image-text model (default: ``model.image_text`` when pretrained,
    e.g. ``hf-hub:imageomics/bioclip-2``, else RUN/stage0.pt) and gets a new audio tower; Stage
    2's is RUN/stage1.pt, or with ``from_stage1 = false`` (the no-Stage-1 ablation) the
    image-text model again.
    """
    s2 = cfg.stage2
    fresh_audio = stage == "stage1" or not s2.from_stage1
    init = init or (image_text_init(cfg, run) if fresh_audio else str(run / OUTPUTS["stage1"]))
    torch.manual_seed(cfg.seed + (1 if stage == "stage1" else 2))
    if fresh_audio:
        image_text = image_text_from(init, cfg)
        vita = VitaModel(image_text, new_audio_teacher(cfg, image_text.embed_dim))
    else:
        vita, _ = VitaModel.load(init)
    vita.to(dist.device)  # the frozen towers' caches are computed there
    data = load_data(cfg)
    extra = {"init": init}
    if stage == "stage1":
        loop = cfg.stage1.loop
        task = VitaTask(stage, vita, data, _sampler(data, loop, dist), FixedWeights.atc_only())
    else:
        if s2.warmup is not None:
            vita = _warm_up(cfg, run, dist, vita, data, stop_after)
            if vita is None:
                return None
        loop = s2.loop
        plan, temperature = _stage2_plan(s2)
        weights = _stage2_weights(s2)
        sampler = _sampler(data, loop, dist)
        task = VitaTask(stage, vita, data, sampler, weights, plan, temperature)
        if s2.gate is not None:
            _gate_baseline(task, s2.gate.baseline_batches, data, loop, dist)
    result = _train(task, loop, run, dist, stop_after)
    if result is None:
        return None
    path = None
    if dist.is_main:
        if stage == "stage2":
            extra["ramp" if s2.gate is None else "gate"] = weights.state_dict()
        path = vita.save(run / OUTPUTS[stage], _meta(cfg, stage, result, **extra))
    # Every rank holds the same trained weights: all of them evaluate, each one share.
    _record_eval(run, stage, Embedder(stage, vita, None, vita.audio.frontend, dist=dist), cfg)
    return path


def _distill_source(
    cfg: TrainConfig, dist: DistContext, student: FrontendSpec, teacher: FrontendSpec, audio
) -> tuple[SpeciesData | None, EpochSampler | StreamSampler]:
    """What the student learns from: the manifest's clips in RAM, or with ``audio`` recordings
    streamed from disk (plus the manifest's clips, labelled, when there is one)."""
    loop = cfg.distill.loop
    student_view, teacher_view = View.of(student), View.of(teacher)
    if not audio:
        data = load_data(cfg, frontend=student)
        other = None if teacher_view == student_view else teacher_view
        return data, _sampler(data, loop, dist, teacher_view=other)
    recordings = find_recordings(audio)
    data = None
    if cfg.data.manifest is not None:
        taxa_path = cfg.data.taxa or cfg.data.manifest.parent / "taxa.csv"
        data = SpeciesData(read_taxa(taxa_path)[0], [])
        recordings += manifest_recordings(
            cfg.data.manifest, cfg.data.train_splits, data.species_ids
        )
    streamed = StreamedAudio(recordings, student_view, teacher_view)
    log.info("distill: %d windows of %d recordings, streamed", len(streamed), len(recordings))
    sampler = StreamSampler(streamed, loop.batch_size, loop.seed, dist.rank, dist.world_size)
    return data, sampler


def run_distill(
    cfg: TrainConfig,
    run: Path,
    dist: DistContext,
    teacher: str | None = None,
    stop_after=None,
    audio: Sequence[Path] = (),
) -> Path | None:
    """The student from ``teacher`` (default RUN/stage2.pt) on the manifest's clips or, with
    ``audio``, on recordings without labels. The student hears its own view (``distill.student``
    may name its ``frontend``; default: the teacher's), the teacher its own."""
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
    data, sampler = _distill_source(cfg, dist, student_cfg.frontend, vita.audio.frontend, audio)
    task = DistillTask(student, vita, data, sampler, d.weights)
    result = _train(task, d.loop, run, dist, stop_after)
    if result is None:
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
    cfg: TrainConfig,
    run: Path,
    checkpoint: str | None = None,
    dist: DistContext | None = None,
    taxa: Path | None = None,
    images: Path | None = None,
) -> Path | None:
    """RUN/species.npz from the manifest's species, or with ``taxa`` from a taxa table alone
    (open vocabulary: text prototypes, plus the images of ``images`` where a species has some).
    Under torchrun every rank embeds a share and rank 0 writes it."""
    dist = dist or DistContext()
    checkpoint = checkpoint or str(run / OUTPUTS["stage2"])
    if taxa is not None:
        data = load_taxa_data(taxa, images)
    elif images is not None:
        raise ConfigError("--images needs --taxa", hint="pass the taxa table the folders name")
    else:
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
        from_stage1 = variant.stage2.from_stage1
        init = str(run / OUTPUTS["stage1"]) if from_stage1 else image_text_init(cfg, run)
        started = time.perf_counter()
        run_vita_stage("stage2", variant, out, dist, init=init)
        seconds[name] = round(time.perf_counter() - started, 1)
    return seconds


def pipeline_stages(cfg: TrainConfig) -> list[str]:
    """The stages a pipeline runs: Stage 0 only for image/text towers trained from scratch;
    Stage 2 only when the manifest has images (without, the seed recipe of arXiv 2602.00681:
    Stage 1 puts the audio tower into the pretrained text space, and distillation and the bank
    take Stage 1's model)."""
    images = manifest_has_images(cfg)
    pretrained = image_text_is_pretrained(cfg)
    if not pretrained and not images:
        raise ConfigError(
            "the manifest has no images, so image/text towers cannot be trained from scratch",
            hint="set model.image_text to a pretrained model (hf-hub:imageomics/bioclip-2 or an "
            "open_clip folder), or add images to the manifest",
        )
    stages = [] if pretrained else ["stage0"]
    stages += ["stage1", "stage2"] if images else ["stage1"]
    return stages + ["distill", "bank"]


def run_pipeline(cfg: TrainConfig, run: Path, dist: DistContext) -> dict[str, float]:
    """The stages of ``pipeline_stages`` in order; completed ones are skipped, interrupted ones
    resume."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(cfg.model_dump_json(indent=2), encoding="utf-8")
    chosen = pipeline_stages(cfg)
    teacher = str(run / OUTPUTS["stage2" if "stage2" in chosen else "stage1"])
    seconds = {}
    steps = {
        "stage0": lambda: run_stage0(cfg, run, dist),
        "stage1": lambda: run_vita_stage("stage1", cfg, run, dist),
        "stage2": lambda: run_vita_stage("stage2", cfg, run, dist),
        "distill": lambda: run_distill(cfg, run, dist, teacher),
        "bank": lambda: run_bank(cfg, run, teacher, dist),
    }
    for stage in chosen:
        if (run / OUTPUTS[stage]).is_file():
            log.info("%s: %s exists, skipped", stage, OUTPUTS[stage])
            continue
        started = time.perf_counter()
        steps[stage]()
        dist.barrier()
        seconds[stage] = round(time.perf_counter() - started, 1)
    skipped = sorted(set(steps) - set(chosen))
    if skipped:
        log.info("pipeline: %s not run for this recipe and data", ", ".join(skipped))
    return seconds
