"""Bundles exported from a trained tiny student: what the device gets, and what it can trust."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest

from biovita.bank import SpeciesBank
from biovita.bundle import load_bundle
from biovita.stored_windows import StoredWindows
from export.cli import main
from export.quantise import MAX_FLOAT_SHARE
from export.runtime import ort_embed, ort_session, torch_embed
from export.windows import manifest_windows
from trainer.checkpoint import load_student


def _device_top1(bundle_path, pcm: np.ndarray) -> np.ndarray:
    """What the device does: load_bundle (hashes, bank) + ONNX Runtime + cosine to the bank."""
    bundle = load_bundle(bundle_path)
    return bundle.bank.similarities(ort_embed(ort_session(bundle.tower_path), pcm)).argmax(1)


def _pytorch_top1(student, pcm: np.ndarray) -> np.ndarray:
    model, _ = load_student(student[0])
    return SpeciesBank.load(student[1]).similarities(torch_embed(model, pcm)).argmax(1)


def test_fp32_bundle_names_the_same_species_as_pytorch_on_the_world_test_clips(
    jetson_bundle, student, world
):
    bundle = load_bundle(jetson_bundle)
    test_clips = manifest_windows(world, bundle.manifest.frontend, "test").pcm
    assert len(test_clips) == 100
    agreement = np.mean(
        _device_top1(jetson_bundle, test_clips) == _pytorch_top1(student, test_clips)
    )
    assert agreement >= 0.995
    parity = bundle.manifest.parity[0]
    assert (parity.reference, parity.candidate, parity.passed) == (
        "pytorch-fp32",
        "onnxruntime-fp32",
        True,
    )
    assert parity.max_abs_diff <= 1e-3 and parity.min_cosine >= 0.9999
    assert parity.windows > len(test_clips)  # the real recordings are in the parity set too


def test_jetson_bundle_carries_calibration_windows_fp16_estimate_and_a_dynamic_batch(
    jetson_bundle,
):
    bundle = load_bundle(jetson_bundle)
    manifest = bundle.manifest
    assert manifest.target == "jetson" and manifest.tower.precision == "fp32"
    stored = StoredWindows.load(bundle)
    assert stored.pcm.shape[1] == manifest.tower.input_samples and len(stored.pcm) >= 64
    assert np.abs(stored.pcm).max() > 0.01  # real audio, not silence
    fp16 = manifest.parity[1]
    assert fp16.candidate.startswith("pytorch-fp16") and fp16.passed
    session = ort_session(bundle.tower_path)
    for batch in (1, 5):
        assert ort_embed(session, stored.pcm[:batch]).shape == (batch, manifest.tower.embedding_dim)
    assert jetson_bundle.with_name("jetson.tar").is_file()
    assert load_bundle(jetson_bundle.with_name("jetson.tar")).manifest == manifest


def test_int8_cpu_bundle_reports_agreement_above_its_threshold(cpu_bundle, student, world):
    bundle = load_bundle(cpu_bundle)
    manifest = bundle.manifest
    assert manifest.tower.precision == "int8"
    assert [t.precision for t in manifest.alternates] == ["fp32"]
    q = manifest.quantisation
    assert q is not None and q.top1_agreement >= q.threshold_top1_agreement == 0.9
    assert "test clips" in q.evaluated_on and "recordings" not in q.evaluated_on
    assert q.calibration_windows > 0 and q.cosine_to_fp32_mean >= 0.98
    int8, total = map(int, re.search(r"(\d+) of (\d+) convolutions int8", q.method).groups())
    assert len(q.float_layers) == total - int8 <= MAX_FLOAT_SHARE * total
    graph = onnx.load(str(bundle.tower_path)).graph
    quantised = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    assert quantised, "a QDQ graph"
    front_end = [n for n in graph.node if n.name.startswith("/logmel/")]
    assert front_end and all(n.op_type != "QuantizeLinear" for n in front_end)
    test_clips = manifest_windows(world, manifest.frontend, "test").pcm
    agreement = np.mean(_device_top1(cpu_bundle, test_clips) == _pytorch_top1(student, test_clips))
    assert agreement >= 0.9


@pytest.mark.parametrize("which", ["jetson_bundle", "cpu_bundle"])
def test_verify_passes_on_a_fresh_bundle_and_prints_its_report(which, request, capsys):
    bundle = request.getfixturevalue(which)
    assert main(["verify", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "every sha256 matches" in out and "verify: ok" in out
    assert out.count("parity: ") == len(load_bundle(bundle).manifest.alternates) + 1
    if which == "jetson_bundle":
        assert "ops ok for TensorRT 10.3" in out
