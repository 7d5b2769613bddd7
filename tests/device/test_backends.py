"""Backends: engine choice, signature checks, fallback; and a bundle from the real exporter."""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timezone

import numpy as np
import pytest

from biovita.bundle import EngineEntry, ParityReport, load_bundle
from biovita.errors import BundleError, ConfigError
from device.backends import (
    OnnxRuntimeBackend,
    make_backend,
    plan_backend,
    select_engine,
    select_tower,
)
from device.config import InferenceSection

NOW = datetime(2026, 5, 1, tzinfo=timezone.utc)


def _engine(file: str, trt: str, sm: str, precision: str = "fp16", passed: bool = True):
    parity = ParityReport(
        reference="onnxruntime", candidate="tensorrt", windows=8, max_abs_diff=0.01,
        min_cosine=0.999, mean_cosine=0.9995, passed=passed,
    )  # fmt: skip
    return EngineEntry(file=file, tensorrt_version=trt, compute_capability=sm,
                       precision=precision, built_utc=NOW, parity=parity)  # fmt: skip


def test_engine_choice_needs_the_same_tensorrt_and_gpu_and_prefers_the_fastest():
    engines = [
        _engine("e/a.engine", "10.3.0.30", "8.7", "fp16"),
        _engine("e/b.engine", "10.3.0", "8.7", "int8"),
        _engine("e/c.engine", "10.3.0", "8.7", "fp32", passed=True),
        _engine("e/d.engine", "8.6.2", "8.7", "int8"),
        _engine("e/e.engine", "10.3.0", "8.7", "int8", passed=False),
    ]
    assert select_engine(engines, "10.3.0.30", "8.7").engine.file == "e/b.engine"
    assert select_engine(engines, "10.3.0", "7.2").engine is None
    assert "no engine matches TensorRT 10.3.0 on compute capability 7.2" in (
        select_engine(engines, "10.3.0", "7.2").reason
    )
    assert select_engine(engines, None, None).reason == "TensorRT is not installed"
    assert select_engine(engines, "10.3.0", None).reason == "no CUDA GPU is visible"
    assert "no TensorRT engine" in select_engine([], "10.3.0", "8.7").reason


def test_the_backend_plan_follows_the_config_and_what_the_device_has():
    engines = [_engine("e/a.engine", "10.3.0", "8.7", "fp16")]
    forced = plan_backend(engines, "onnxruntime", "10.3.0", "8.7")
    assert (forced.runtime, forced.fallback) == ("onnxruntime", False)
    matched = plan_backend(engines, "auto", "10.3.0.30", "8.7")
    assert (matched.runtime, matched.engine.file) == ("tensorrt", "e/a.engine")
    # An engine in the bundle that cannot run here, or TensorRT asked for: a fallback, said loudly.
    assert plan_backend(engines, "auto", None, None).fallback
    assert plan_backend([], "tensorrt", None, None).fallback
    quiet = plan_backend([], "auto", None, None)  # a CPU bundle on a CPU board: nothing to warn
    assert (quiet.runtime, quiet.fallback, quiet.reason) == (
        "onnxruntime",
        False,
        "TensorRT is not installed",
    )
    with pytest.raises(ConfigError, match="unknown backend 'cuda'"):
        plan_backend(engines, "cuda", None, None)


def test_fallback_to_onnxruntime_says_why(tone_bundle, tmp_path, caplog):
    bundle = load_bundle(tone_bundle)
    with_engine = bundle.manifest.model_copy(
        update={"engines": [_engine("x.engine", "10.3.0", "8.7")]}
    )
    bundle.manifest = with_engine
    with caplog.at_level(logging.WARNING):
        backend = make_backend(bundle, InferenceSection(backend="auto"))
    assert backend.name == "onnxruntime-cpu-fp32"
    assert "falling back to ONNX Runtime" in caplog.text
    assert "TensorRT is not installed" in caplog.text or "no CUDA GPU" in caplog.text


def test_onnx_signature_must_match_the_manifest(tone_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(tone_bundle, copy)
    bundle = load_bundle(copy)
    tower = bundle.manifest.tower.model_copy(update={"input_samples": 32_000})
    bundle.manifest = bundle.manifest.model_copy(update={"tower": tower})
    with pytest.raises(BundleError, match=r"manifest says \[batch, 32000\]"):
        OnnxRuntimeBackend(bundle)
    with pytest.raises(ConfigError, match="no int8 tower"):
        select_tower(load_bundle(copy), "int8")


@pytest.mark.slow
def test_a_bundle_from_the_real_exporter_runs_through_classify(real_audio_dir, tmp_path):
    """A small CompactAudioTower saved as a student, exported by export/, classified here."""
    torch = pytest.importorskip("torch")
    from biovita.bank import SpeciesBank
    from device.cli import main
    from export.package import ExportRequest, export_bundle
    from export.windows import WindowSources
    from tests.support.tiny_bundle import tone_taxa
    from trainer.checkpoint import save_student
    from trainer.models.compact import CompactAudioTower, CompactConfig

    torch.manual_seed(0)
    config = CompactConfig(
        embed_dim=32, stem_channels=8, blocks=[(2, 8, 2), (2, 16, 2)], head_channels=32
    )
    save_student(tmp_path / "student.pt", CompactAudioTower(config).eval(), {})
    taxa = tone_taxa(6)
    SpeciesBank(taxa, np.random.default_rng(0).standard_normal((6, 32))).save(tmp_path / "bank.npz")
    out = export_bundle(
        ExportRequest(
            checkpoint=tmp_path / "student.pt", bank=tmp_path / "bank.npz", out=tmp_path / "bundle",
            target="cpu", sources=WindowSources(audio=(real_audio_dir,)),
        )
    )  # fmt: skip
    bundle = load_bundle(out)
    for precision in {
        bundle.manifest.tower.precision,
        *(t.precision for t in bundle.manifest.alternates),
    }:
        backend = OnnxRuntimeBackend(bundle, precision=precision)
        emb = backend.embed(np.zeros((3, bundle.manifest.tower.input_samples), np.float32))
        assert emb.shape == (3, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-3)
    argv = ["classify", str(real_audio_dir), "--bundle", str(out), "--out", str(tmp_path / "o"),
            "--set", "classify.threshold=0.0", "-q"]  # fmt: skip
    assert main(argv) == 0
    text = (tmp_path / "o" / "detections.csv").read_text()
    assert text.count("\n") > 5  # threshold 0: every real recording yields events
