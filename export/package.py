"""One export, start to finish: checkpoint + bank -> checked ONNX -> (INT8) -> published bundle.

Everything is written into a staging directory beside the destination and published with one
rename (``biovita.bundle.publish_bundle``); any failure or crash before that leaves the old bundle,
if any, untouched, and the staging directory holds no manifest, so it never loads as a bundle.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import onnxruntime
import torch

from biovita.bank import SpeciesBank
from biovita.bundle import (
    SPECIES_NAME,
    TOWER_NAME,
    Manifest,
    ParityReport,
    Precision,
    Provenance,
    QuantisationReport,
    ScoringDefaults,
    SpeciesInfo,
    Target,
    TowerSpec,
    pack_tar,
    publish_bundle,
    sha256_file,
    staging_dir_for,
)
from biovita.parity import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    MIN_INT8_TOP1,
    Tolerance,
    compare,
    describe,
    require,
)
from biovita.stored_windows import CALIBRATION_DIR, StoredWindows
from export.errors import ExportError
from export.onnx_export import DEFAULT_OPSET, check_tower_io, export_onnx
from export.opsupport import DEFAULT_TRT_VERSION, check_ops
from export.quantise import judge_int8, quantise_int8
from export.runtime import fp16_emulation, ort_embed, ort_session, torch_embed
from export.scoring import calibrate_bundle
from export.windows import Windows, WindowSources
from trainer.checkpoint import load_student
from trainer.models.compact import count_parameters

log = logging.getLogger(__name__)

INT8_TOWER_NAME = "audio_tower.int8.onnx"
DEFAULT_PRECISION: dict[str, Precision] = {"jetson": "fp32", "cpu": "int8", "rpi": "int8"}
# Windows stored in the bundle: the Jetson's INT8 calibrator wants a few hundred batches' worth
# of variety (128 x 3 s = 6.4 min of audio, 12 MB as float16); cpu/rpi only re-check parity.
STORED_WINDOWS = {"jetson": 128, "cpu": 32, "rpi": 32}
MAX_CALIBRATION_WINDOWS = 256  # ORT MinMax calibration: ranges settle well before this
MAX_INT8_CHECK_WINDOWS = 2048  # the mixed-precision search's agreement: +-0.4 points at 97%
MAX_EVALUATION_WINDOWS = 4000
FP16_EMULATION_WINDOWS = 32  # PyTorch fp16 on CPU is slow; 32 windows bound the estimate


@dataclass(frozen=True)
class ExportRequest:
    checkpoint: Path
    bank: Path
    out: Path
    target: Target
    sources: WindowSources
    precision: Precision | None = None  # None: the target's default
    trt_version: str = DEFAULT_TRT_VERSION
    opset: int = DEFAULT_OPSET
    stored_windows: int | None = None
    tolerance: Tolerance = field(default_factory=lambda: FP32_TOLERANCE)
    min_int8_agreement: float = MIN_INT8_TOP1
    tar: bool = False
    calibrate_on: tuple[Path, ...] = ()  # validation soundscapes the scoring defaults are fitted on

    @property
    def chosen_precision(self) -> Precision:
        precision = self.precision or DEFAULT_PRECISION[self.target]
        if precision == "int8" and self.target == "jetson":
            raise ExportError(
                "an INT8 Jetson model is built by TensorRT on the device, not here",
                hint="export --target jetson (fp32 ONNX + calibration windows), then run "
                "`biovita-field engine --bundle B --int8` on the Jetson",
            )
        if precision == "fp16":
            raise ExportError(
                "the bundle's ONNX is fp32 for every target; fp16 is a TensorRT engine option",
                hint="export --target jetson, then `biovita-field engine --bundle B --fp16` on the board",
            )
        return precision


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _provenance(checkpoint: Path, meta: dict) -> Provenance:
    versions = (
        f"torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}"
    )
    return Provenance(
        git_commit=_git_commit(),
        recipe=str(meta.get("recipe", "")),
        checkpoint_sha256=sha256_file(checkpoint),
        teacher=str(meta.get("teacher_checkpoint", meta.get("teacher", ""))),
        created_by=f"biovita-export ({versions})",
    )


def _load_inputs(request: ExportRequest) -> tuple[torch.nn.Module, dict, SpeciesBank]:
    model, meta = load_student(request.checkpoint)
    bank = SpeciesBank.load(request.bank)
    if bank.dim != model.config.embed_dim:
        raise ExportError(
            f"the bank's embeddings have dim {bank.dim} but the tower outputs {model.config.embed_dim}",
            hint="pass the species.npz built for this student (same run directory)",
        )
    return model, meta, bank


def _fp16_estimate(model: torch.nn.Module, evaluation: Windows, bank: SpeciesBank) -> ParityReport:
    sample = evaluation.spread(FP16_EMULATION_WINDOWS).pcm
    report = compare(
        torch_embed(model, sample),
        torch_embed(fp16_emulation(model), sample),
        "pytorch-fp32",
        "pytorch-fp16-emulated (front-end fp32)",
        bank,
        FP16_TOLERANCE,
    )
    log.info(describe(report))
    return require(report)


def export_bundle(request: ExportRequest) -> Path:
    """Write the bundle for ``request.target`` to ``request.out`` (atomically); return its path."""
    precision = request.chosen_precision
    model, meta, bank = _load_inputs(request)
    spec = model.config.frontend
    evaluation = request.sources.evaluation(spec).spread(MAX_EVALUATION_WINDOWS)
    calibration = request.sources.calibration(spec)
    log.info("%d evaluation windows, %d calibration windows", len(evaluation), len(calibration))

    staging = staging_dir_for(request.out)
    try:
        tower = TowerSpec(
            input_samples=spec.window_samples,
            embedding_dim=model.config.embed_dim,
            opset=request.opset,
            parameters=count_parameters(model),
        )
        proto = export_onnx(model, staging / TOWER_NAME, spec.window_samples, request.opset)
        check_tower_io(proto, tower.input_samples, tower.embedding_dim)
        if request.target == "jetson":
            log.info(check_ops(proto, request.trt_version).describe())

        reference = torch_embed(model, evaluation.pcm)
        onnx_fp32 = ort_embed(ort_session(staging / TOWER_NAME), evaluation.pcm)
        parity = [
            compare(
                reference, onnx_fp32, "pytorch-fp32", "onnxruntime-fp32", bank, request.tolerance
            )
        ]
        log.info(describe(parity[0]))
        require(parity[0])
        if request.target == "jetson":
            parity.append(_fp16_estimate(model, evaluation, bank))

        # The Jetson's INT8 calibrator needs training-side windows; elsewhere the stored windows
        # only re-check parity, best on the benchmark's clips (where the INT8 bar was measured).
        keep = calibration if request.target == "jetson" else request.sources.benchmark(spec)
        count = request.stored_windows or STORED_WINDOWS[request.target]
        stored_pcm = StoredWindows.round(keep.spread(count).pcm)
        StoredWindows(stored_pcm, torch_embed(model, stored_pcm)).save(staging)

        quantisation: QuantisationReport | None = None
        alternates: list[TowerSpec] = []
        if precision == "int8":
            calibrate_on = calibration.spread(MAX_CALIBRATION_WINDOWS).pcm
            plan = quantise_int8(
                staging / TOWER_NAME,
                staging / INT8_TOWER_NAME,
                calibrate_on,
                request.target,
                check_windows=calibration.spread(MAX_INT8_CHECK_WINDOWS).pcm,
                bank=bank,
                min_top1=request.min_int8_agreement,
            )
            quantisation = judge_int8(
                staging / TOWER_NAME,
                staging / INT8_TOWER_NAME,
                request.sources.benchmark(spec).spread(MAX_EVALUATION_WINDOWS).pcm,
                len(calibrate_on),
                bank,
                evaluated_on=request.sources.describe_benchmark(),
                min_top1=request.min_int8_agreement,
                plan=plan,
            )
            alternates = [tower]
            tower = tower.model_copy(update={"file": INT8_TOWER_NAME, "precision": "int8"})

        bank.save(staging / SPECIES_NAME)
        manifest = Manifest(
            target=request.target,
            provenance=_provenance(request.checkpoint, meta),
            frontend=spec,
            tower=tower,
            alternates=alternates,
            species=SpeciesInfo(count=len(bank), dim=bank.dim, taxonomy_source=bank.source),
            scoring=ScoringDefaults(**meta.get("scoring", {})),
            parity=parity,
            quantisation=quantisation,
            calibration_dir=CALIBRATION_DIR,
        )
        out = publish_bundle(staging, manifest, request.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if request.calibrate_on:
        log.info(calibrate_bundle(out, request.calibrate_on).describe())
    if request.tar:
        pack_tar(out, out.with_name(out.name + ".tar"))
    return out
