"""`biovita-export verify BUNDLE`: re-check a bundle where it will run, and say what was checked.

Hashes and schema (``biovita.bundle.load_bundle``), each ONNX tower's graph and interface, op
support for the TensorRT it targets (Jetson bundles), and parity: ONNX Runtime on this machine
against the PyTorch embeddings stored with the bundle's windows, judged by the tolerance of the
tower's precision. Raises at the first failure; returns the report lines when all pass.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx

from biovita.bundle import Bundle, Manifest, TowerSpec, load_bundle
from biovita.errors import BundleError
from biovita.parity import TOLERANCES, Tolerance, compare, describe, require
from biovita.stored_windows import StoredWindows
from export.onnx_export import check_tower_io
from export.opsupport import DEFAULT_TRT_VERSION, check_ops
from export.runtime import ort_embed, ort_session


def _check_tower(bundle: Bundle, spec: TowerSpec, trt_version: str | None) -> str:
    path = bundle.path(spec.file)
    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise BundleError(f"{path} fails onnx.checker: {err}", hint="re-export the bundle") from err
    check_tower_io(proto, spec.input_samples, spec.embedding_dim)
    line = f"{spec.file}: {spec.precision}, pcm [batch, {spec.input_samples}] -> embedding [batch, {spec.embedding_dim}]"
    if trt_version and spec.precision == "fp32":
        line += f"; ops ok for {check_ops(proto, trt_version).describe()}"
    return line


def _tolerance(manifest: Manifest, spec: TowerSpec) -> Tolerance:
    """The precision's tolerance; an INT8 tower is held to the bar it was accepted with."""
    if spec.precision == "int8" and manifest.quantisation is not None:
        return Tolerance(min_top1=manifest.quantisation.threshold_top1_agreement)
    return TOLERANCES[spec.precision]


def verify_bundle(
    path: str | Path, trt_version: str | None = None, say: Callable[[str], None] = print
) -> list[str]:
    lines: list[str] = []

    def report(line: str) -> None:
        lines.append(line)
        say(line)

    bundle = load_bundle(path)
    manifest = bundle.manifest
    report(
        f"bundle {manifest.bundle_id} ({manifest.target}) at {bundle.root}: schema "
        f"v{manifest.schema_version}, {len(manifest.files)} files, every sha256 matches"
    )
    report(f"species bank: {manifest.species.count} species x {manifest.species.dim}")
    if manifest.frontend.window_samples != manifest.tower.input_samples:
        raise BundleError(
            f"the front-end window is {manifest.frontend.window_samples} samples but the tower "
            f"takes {manifest.tower.input_samples}",
            hint="the manifest was edited; re-export the bundle",
        )
    if trt_version is None and manifest.target == "jetson":
        trt_version = DEFAULT_TRT_VERSION
    towers = [manifest.tower, *manifest.alternates]
    for spec in towers:
        report(_check_tower(bundle, spec, trt_version))
    stored = StoredWindows.load(bundle)
    if stored.reference is None:
        report("parity: not re-run (the bundle stores no reference embeddings)")
    for spec in towers if stored.reference is not None else []:
        embedded = ort_embed(ort_session(bundle.path(spec.file)), stored.pcm)
        parity = compare(
            stored.reference,
            embedded,
            "pytorch-fp32 (stored)",
            f"onnxruntime-{spec.precision} ({spec.file})",
            bundle.bank,
            _tolerance(manifest, spec),
        )
        report("parity: " + describe(parity))
        require(parity)
    for engine in manifest.engines:
        report(
            f"engine {engine.file}: TensorRT {engine.tensorrt_version}, sm {engine.compute_capability}, "
            f"{engine.precision}; hash ok (runs only on that TensorRT and GPU)"
        )
    report("verify: ok")
    return lines
