"""The CLAP front-end against the library it imitates: ``transformers.ClapFeatureExtractor``.

The extractor is built from ``laion/clap-htsat-unfused``'s ``preprocessor_config.json`` (its values
written out here: nothing is downloaded). On clips of at most 10 s it is deterministic, so the
numpy reference and the float64 torch module must give its ``input_features`` to 1e-3 dB; the
float32 module (what runs on a recorder) is held to its measured float32 rounding, and its ONNX
graph to the TensorRT 10.3 op table.
"""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
from transformers import ClapFeatureExtractor

from biovita.audio import load_audio
from biovita.clap_frontend import clap_input_features, clap_log_mel, slaney_filterbank
from biovita.errors import ConfigError
from biovita.frontend import ClapFrontendSpec, FrontendSpec, fit_window, frontend_spec
from export.onnx_export import export_onnx
from export.opsupport import check_ops
from tests.trainer.clap_reference import CLAP_HTSAT_UNFUSED, clap_extractor
from trainer.models.frontend import ClapLogMel, frontend_module

SPEC = ClapFrontendSpec.from_preprocessor_config(CLAP_HTSAT_UNFUSED)
DB_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def extractor() -> ClapFeatureExtractor:
    return clap_extractor()


def _reference(extractor: ClapFeatureExtractor, pcm: np.ndarray) -> np.ndarray:
    out = extractor(pcm, sampling_rate=SPEC.sample_rate, return_tensors="np")
    return out["input_features"][0, 0]  # [frames, mels]


def _synthetic_clips() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    rate = SPEC.sample_rate
    t = np.arange(int(4.3 * rate)) / rate
    chirp = 0.3 * np.sin(2 * np.pi * (500 * t + 900 * t**2))
    return {
        "10 s noise": (0.1 * rng.standard_normal(10 * rate)).astype(np.float32),
        "4.3 s chirp (repeat-padded)": chirp.astype(np.float32),
        "0.7 s tone burst + silence": np.concatenate(
            [0.5 * np.sin(2 * np.pi * 6000 * t[: int(0.7 * rate)]), np.zeros(rate // 5)]
        ).astype(np.float32),
        "9.99 s near-silence": (1e-6 * rng.standard_normal(int(9.99 * rate))).astype(np.float32),
    }


def _real_clips(files) -> dict[str, np.ndarray]:
    return {f.name: load_audio(f, SPEC.sample_rate)[0][: SPEC.window_samples] for f in files}


def test_the_spec_reads_the_preprocessor_config():
    assert ClapFrontendSpec() == SPEC  # the CLAP defaults are clap-htsat-unfused's
    assert SPEC.window_samples == 480_000 and SPEC.n_frames() == 1001
    with pytest.raises(ConfigError, match="fusion"):
        ClapFrontendSpec.from_preprocessor_config({**CLAP_HTSAT_UNFUSED, "truncation": "fusion"})


def test_slaney_filters_are_transformers_filters(extractor):
    np.testing.assert_allclose(slaney_filterbank(SPEC), extractor.mel_filters_slaney.T, atol=1e-12)


def test_numpy_reference_matches_the_extractor_on_real_recordings(extractor, real_audio_files):
    for name, pcm in _real_clips(real_audio_files).items():
        ours = clap_input_features(pcm, SPEC)
        expected = _reference(extractor, pcm)
        assert ours.shape == expected.shape == (1001, 64), name
        assert np.abs(ours - expected).max() < DB_TOLERANCE, name


def test_numpy_reference_matches_the_extractor_on_synthetic_audio(extractor):
    for name, pcm in _synthetic_clips().items():
        diff = np.abs(clap_input_features(pcm, SPEC) - _reference(extractor, pcm)).max()
        assert diff < DB_TOLERANCE, name


def test_torch_module_computes_the_extractor_features(extractor, real_audio_files):
    """float64 kernels: the arithmetic itself is the extractor's; float32: its rounding only."""
    clips = {**_real_clips(real_audio_files), **_synthetic_clips()}
    exact, deployed = ClapLogMel(SPEC, torch.float64), frontend_module(SPEC)
    for name, pcm in clips.items():
        window = fit_window(pcm, SPEC)
        expected = _reference(extractor, pcm).T  # [mels, frames]
        with torch.no_grad():
            f64 = exact(torch.from_numpy(window[None].astype(np.float64)))[0].numpy()
            f32 = deployed(torch.from_numpy(window[None]))[0].numpy()
        assert np.abs(f64 - expected).max() < DB_TOLERANCE, name
        # float32 DFT rounding is relative to the loudest bin: tiny within 60 dB of the clip's
        # peak, growing to tenths of a dB in a pure tone's leakage 100 dB below it
        loud = expected > expected.max() - 60.0
        assert np.abs(f32 - expected)[loud].max() < 0.01, name
        assert np.abs(f32 - expected).mean() < 5e-3, name


def test_onnx_graph_has_no_stft_and_matches_the_reference(tmp_path, real_audio_files):
    class Features(torch.nn.Module):  # export_onnx wants a [B, D] output: flatten the mel
        def __init__(self) -> None:
            super().__init__()
            self.logmel = ClapLogMel(SPEC)

        def forward(self, pcm: torch.Tensor) -> torch.Tensor:
            return self.logmel(pcm).flatten(1)

    path = tmp_path / "clap_frontend.onnx"
    proto = export_onnx(Features(), path, SPEC.window_samples)
    report = check_ops(proto, "10.3")
    assert not {"STFT", "DFT", "MelWeightMatrix"} & set(report.ops)
    pads = [n for n in proto.graph.node if n.op_type == "Pad"]
    modes = {a.s.decode() for n in pads for a in n.attribute if a.name == "mode"}
    assert modes <= {"constant"}  # the centring reflection is slices, not a reflect Pad
    window = fit_window(load_audio(real_audio_files[0], SPEC.sample_rate)[0], SPEC)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"pcm": window[None]})
    expected = clap_log_mel(window, SPEC)
    assert np.abs(out.reshape(expected.shape) - expected).max() < 0.05


def test_front_ends_are_named_or_spelled_out():
    assert frontend_spec("clap") == ClapFrontendSpec()
    assert frontend_spec("biovita") == FrontendSpec()
    # a spec stored before front-ends had a kind is a biovita spec
    old = {k: v for k, v in FrontendSpec().model_dump().items() if k not in ("kind", "padding")}
    assert frontend_spec(old) == FrontendSpec()
    assert frontend_spec({"kind": "clap", "window_s": 5}).window_samples == 240_000
    with pytest.raises(ConfigError, match="unknown front-end"):
        frontend_spec("mfcc")
    with pytest.raises(ConfigError, match="Nyquist"):
        frontend_spec({"kind": "clap", "sample_rate": 16_000})


def test_repeat_padding_is_the_extractors():
    clip = np.arange(1, 150_001, dtype=np.float32)  # 3.125 s at 48 kHz: 3 whole copies fit
    padded = fit_window(clip, SPEC)
    np.testing.assert_array_equal(padded[:450_000], np.tile(clip, 3))
    assert not padded[450_000:].any() and len(padded) == SPEC.window_samples
    repeat = fit_window(clip, SPEC.model_copy(update={"padding": "repeat"}))
    np.testing.assert_array_equal(repeat, np.tile(clip, 4)[: SPEC.window_samples])
    zeros = fit_window(clip, FrontendSpec(window_s=10.0))
    np.testing.assert_array_equal(zeros[:150_000], clip)
    assert not zeros[150_000:].any()
