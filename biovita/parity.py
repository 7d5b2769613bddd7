"""How closely one implementation of the tower reproduces another, and when that is close enough.

Embeddings are unit vectors and the device ranks species by cosine, so the measures are the max
absolute difference of any coordinate, the min and mean cosine between paired embeddings, and the
share of windows whose top-1 species (against the bank) is the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biovita.bank import SpeciesBank, l2_normalise
from biovita.bundle import ParityReport
from biovita.errors import ParityError


@dataclass(frozen=True)
class Tolerance:
    max_abs: float | None = None
    min_cosine: float | None = None
    min_top1: float | None = None


# PyTorch fp32 vs ONNX Runtime fp32 runs the same arithmetic in another order (fused Conv+BN,
# other GEMM blocking), which moves a unit-norm embedding by ~1e-6 per coordinate. 1e-3 is three
# orders above that and still ten times below the similarity margin that decides a species (the
# top-1 and top-2 cosines of a confident window differ by > 1e-2); a cosine of 0.9999 is an
# angle under 0.9 degrees. Anything worse means a wrong graph, not rounding. Top-1: the issue's
# bar, 99.5% of windows name the same species.
FP32_TOLERANCE = Tolerance(max_abs=1e-3, min_cosine=0.9999, min_top1=0.995)

# TensorRT fp16 (front-end kept in fp32): fp16 carries ~3 decimal digits, so per-coordinate
# differences of a few 1e-3 are expected; a cosine of 0.999 (2.6 degrees) keeps the ranking of any
# species pair whose similarities differ by more than ~0.05 intact.
FP16_TOLERANCE = Tolerance(max_abs=2e-2, min_cosine=0.999, min_top1=0.98)

# INT8 vs fp32: coordinates move by a few percent, so only the decision is judged. 97% of windows
# must keep their fp32 top-1 species: the distilled student's own top-1 accuracy is well below
# 100% and its mistakes sit on near-ties, so a few flips there cost little; more than 3% would cost
# more accuracy than INT8's speed-up is worth (the fp32 tower ships beside it as the fallback),
# while a bar near 100% would reject good models over ties decided by rounding. Measured on the
# default world's student (docs/BENCHMARKS.md, Export): at 97.75% the INT8 tower changes the answer
# on call windows less than moving the window by 1 ms does, and the bar refused (at 82%) a student
# whose answers changed with 20 ms of window alignment, a defect a looser bar would have shipped.
MIN_INT8_TOP1 = 0.97
INT8_TOLERANCE = Tolerance(min_top1=MIN_INT8_TOP1)

TOLERANCES = {"fp32": FP32_TOLERANCE, "fp16": FP16_TOLERANCE, "int8": INT8_TOLERANCE}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(l2_normalise(a) * l2_normalise(b), axis=1)


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    reference_name: str,
    candidate_name: str,
    bank: SpeciesBank | None = None,
    tolerance: Tolerance | None = None,
) -> ParityReport:
    """Measure ``candidate`` against ``reference`` (both ``[N, D]``) and judge it."""
    if reference.shape != candidate.shape or not len(reference):
        raise ParityError(
            f"cannot compare embeddings of shapes {reference.shape} and {candidate.shape}",
            hint="both models must embed the same, non-empty set of windows",
        )
    tolerance = tolerance or Tolerance()
    cos = cosines(reference, candidate)
    top1 = None
    if bank is not None:
        same = bank.similarities(reference).argmax(1) == bank.similarities(candidate).argmax(1)
        top1 = float(same.mean())
    report = ParityReport(
        reference=reference_name,
        candidate=candidate_name,
        windows=len(reference),
        max_abs_diff=float(np.abs(reference - candidate).max()),
        min_cosine=float(cos.min()),
        mean_cosine=float(cos.mean()),
        top1_agreement=top1,
        tolerance_max_abs=tolerance.max_abs,
        tolerance_min_cosine=tolerance.min_cosine,
        tolerance_min_top1=tolerance.min_top1,
    )
    return report.model_copy(update={"passed": not failures(report)})


def failures(report: ParityReport) -> list[str]:
    """Every tolerance the report misses, as text (empty: it passes)."""
    found = []
    if report.tolerance_max_abs is not None and not report.max_abs_diff <= report.tolerance_max_abs:
        found.append(f"max abs diff {report.max_abs_diff:.3g} > {report.tolerance_max_abs:g}")
    if (
        report.tolerance_min_cosine is not None
        and not report.min_cosine >= report.tolerance_min_cosine
    ):
        found.append(f"min cosine {report.min_cosine:.6f} < {report.tolerance_min_cosine:g}")
    if (
        report.tolerance_min_top1 is not None
        and report.top1_agreement is not None
        and not report.top1_agreement >= report.tolerance_min_top1
    ):
        found.append(
            f"top-1 agreement {report.top1_agreement:.2%} < {report.tolerance_min_top1:.1%}"
        )
    return found


def require(report: ParityReport) -> ParityReport:
    """Return ``report`` if it passes, else raise ``ParityError`` naming what missed."""
    missed = failures(report)
    if missed:
        raise ParityError(
            f"{report.candidate} does not reproduce {report.reference} on {report.windows} "
            f"windows: {'; '.join(missed)}",
            hint="the exported graph computes something else than the checkpoint: check the "
            "model's forward() for training-only or data-dependent code, then re-export",
        )
    return report


def describe(report: ParityReport) -> str:
    top1 = "" if report.top1_agreement is None else f", top-1 {report.top1_agreement:.2%}"
    verdict = "ok" if report.passed else "FAILED: " + "; ".join(failures(report))
    return (
        f"{report.candidate} vs {report.reference} on {report.windows} windows: max abs "
        f"{report.max_abs_diff:.2e}, cosine min {report.min_cosine:.6f} mean "
        f"{report.mean_cosine:.6f}{top1}: {verdict}"
    )
