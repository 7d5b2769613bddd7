"""A tiny but real bundle built through the contracts, without torch: for device/server tests.

The audio tower is an ONNX graph made with ``onnx.helper`` that follows the bundle contract
("pcm" float32 [batch, samples] -> unit-norm "embedding" [batch, D]) and computes the shared
log-mel front-end inside the graph with Conv1d DFT kernels (as the exported student does). Its
embedding is the per-band "peakiness" of the log-mel (max over time minus mean over time, after a
0.2 s moving average),
centred across bands, projected by a fixed random orthogonal matrix and L2-normalised: a
transient call lights up its bands, stationary background does not. A bank built from the
tower's embeddings of each species' calls therefore makes detection meaningful without a
trained network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from biovita.bank import SpeciesBank, l2_normalise
from biovita.bundle import (
    TOWER_NAME,
    Manifest,
    ScoringDefaults,
    SpeciesInfo,
    TowerSpec,
    publish_bundle,
    staging_dir_for,
)
from biovita.frontend import FrontendSpec, dft_kernels, log_mel, mel_filterbank
from biovita.taxonomy import Taxon

SMOOTH_FRAMES = 10
SILENCE_OFFSET = 0.5


def tiny_tower(spec: FrontendSpec, dim: int = 80, seed: int = 0) -> onnx.ModelProto:
    """The ONNX graph: pcm [B, S] -> embedding [B, dim]."""
    n_bins = spec.n_bins
    kernels = dft_kernels(spec).astype(np.float32)[:, None, :]  # [2*bins, 1, n_fft]
    mel = mel_filterbank(spec).T.astype(np.float32)  # [bins, n_mels]
    if dim <= spec.n_mels:
        raise ValueError(f"dim must exceed n_mels ({spec.n_mels}): one axis is for silence")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    projection = q[: spec.n_mels].astype(np.float32)  # orthonormal rows: keeps cosines
    # Digital silence has no shape at all; without this offset its embedding would be rounding
    # noise blown up to unit length, i.e. a random species. The offset lies on an axis the
    # projection never reaches, so it only matters when there is nothing else.
    quiet = (SILENCE_OFFSET * q[spec.n_mels]).astype(np.float32)
    inits = [
        numpy_helper.from_array(kernels, "dft"),
        numpy_helper.from_array(mel, "mel"),
        numpy_helper.from_array(projection, "proj"),
        numpy_helper.from_array(quiet, "quiet"),
        numpy_helper.from_array(noise_band_scale(spec), "band_scale"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([n_bins, n_bins], np.int64), "split_sizes"),
        numpy_helper.from_array(np.array(spec.log_offset, np.float32), "offset"),
        numpy_helper.from_array(np.array(1e-12, np.float32), "eps"),
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["pcm", "axis1"], ["x1"]),  # [B, 1, S]
        helper.make_node("Conv", ["x1", "dft"], ["spec"], strides=[spec.hop_length]),
        helper.make_node("Split", ["spec", "split_sizes"], ["re", "im"], axis=1),
        helper.make_node("Mul", ["re", "re"], ["re2"]),
        helper.make_node("Mul", ["im", "im"], ["im2"]),
        helper.make_node("Add", ["re2", "im2"], ["power"]),  # [B, bins, T]
        helper.make_node("Transpose", ["power"], ["power_t"], perm=[0, 2, 1]),  # [B, T, bins]
        helper.make_node("MatMul", ["power_t", "mel"], ["mel_e"]),  # [B, T, n_mels]
        helper.make_node("Add", ["mel_e", "offset"], ["mel_o"]),
        helper.make_node("Log", ["mel_o"], ["logmel"]),
        helper.make_node("Transpose", ["logmel"], ["logmel_t"], perm=[0, 2, 1]),  # [B, n_mels, T]
        # ~0.2 s moving average: tames the frame-to-frame variance of noise in narrow bands
        helper.make_node("AveragePool", ["logmel_t"], ["smooth"], kernel_shape=[SMOOTH_FRAMES]),
        helper.make_node("ReduceMax", ["smooth"], ["peak"], axes=[2], keepdims=0),  # [B, n_mels]
        helper.make_node("ReduceMean", ["smooth"], ["level"], axes=[2], keepdims=0),
        helper.make_node("Sub", ["peak", "level"], ["peaky_raw"]),
        helper.make_node("Div", ["peaky_raw", "band_scale"], ["peaky"]),  # noise -> ~1 per band
        helper.make_node("ReduceMean", ["peaky"], ["centre"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["peaky", "centre"], ["shape"]),
        helper.make_node("MatMul", ["shape", "proj"], ["projected"]),  # [B, dim]
        helper.make_node("Add", ["projected", "quiet"], ["raw"]),
        helper.make_node("Mul", ["raw", "raw"], ["sq"]),
        helper.make_node("ReduceSum", ["sq", "axis1"], ["ss"], keepdims=1),
        helper.make_node("Add", ["ss", "eps"], ["ss_e"]),
        helper.make_node("Sqrt", ["ss_e"], ["norm"]),
        helper.make_node("Div", ["raw", "norm"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_tower",
        [helper.make_tensor_value_info("pcm", TensorProto.FLOAT, ["batch", spec.window_samples])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def noise_band_scale(spec: FrontendSpec, windows: int = 8) -> np.ndarray:
    """Mean per-band peakiness of white noise (numpy reference front-end): the tower divides by
    it, so narrow low bands, whose power fluctuates most, do not look like a call in noise."""
    rng = np.random.default_rng(1234)
    noise = rng.standard_normal((windows, spec.window_samples)).astype(np.float32) * 0.01
    logmel = log_mel(noise, spec)  # [W, n_mels, frames]
    kernel = np.ones(SMOOTH_FRAMES) / SMOOTH_FRAMES
    smooth = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="valid"), -1, logmel)
    peaky = smooth.max(-1) - smooth.mean(-1)
    return peaky.mean(0).astype(np.float32)


def tower_embed(model_path: Path, pcm: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(["embedding"], {"pcm": np.asarray(pcm, np.float32)})[0]


def windows_of(calls: Iterable[np.ndarray], window_samples: int) -> np.ndarray:
    """Each call centred in one zero-padded window (or its first window if longer)."""
    out = []
    for call in calls:
        call = np.asarray(call, np.float32)[:window_samples]
        pad = window_samples - len(call)
        out.append(np.pad(call, (pad // 2, pad - pad // 2)))
    return np.stack(out)


def build_tiny_bundle(
    out: Path,
    taxa: list[Taxon],
    calls: Mapping[str, list[np.ndarray]] | None = None,
    spec: FrontendSpec | None = None,
    dim: int = 80,
    scoring: ScoringDefaults | None = None,
    seed: int = 0,
) -> Path:
    """Publish a bundle at ``out``; the bank is the tower's mean embedding of each species' calls
    (``calls``: species_id -> list of mono float32 at ``spec.sample_rate``), or random if None."""
    spec = spec or FrontendSpec()
    out = Path(out)
    staging = staging_dir_for(out)
    tower_path = staging / TOWER_NAME
    onnx.save(tiny_tower(spec, dim, seed), str(tower_path))
    if calls is None:
        embeddings = np.random.default_rng(seed).standard_normal((len(taxa), dim))
    else:
        embeddings = np.stack(
            [
                tower_embed(tower_path, windows_of(calls[t.species_id], spec.window_samples)).mean(
                    0
                )
                for t in taxa
            ]
        )
    bank = SpeciesBank(taxa, l2_normalise(embeddings), source="tests/support/tiny_bundle.py")
    bank.save(staging / "species.npz")
    manifest = Manifest(
        frontend=spec,
        tower=TowerSpec(input_samples=spec.window_samples, embedding_dim=dim),
        species=SpeciesInfo(count=len(taxa), dim=dim, taxonomy_source="tests"),
        scoring=scoring or ScoringDefaults(),
    )
    return publish_bundle(staging, manifest, out)


def tone_taxa(n: int) -> list[Taxon]:
    return [
        Taxon(
            species_id=f"sp{i:02d}",
            scientific_name=f"Tonus species{i}",
            common_name=f"Tone {i}",
            genus="Tonus",
        )
        for i in range(n)
    ]


def tone_call(freq_hz: float, rate: int = 16_000, seconds: float = 0.6) -> np.ndarray:
    """A Hann-shaped tone burst: the simplest 'species call' a test can make."""
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.hanning(len(t)) * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


TONE_FREQS_HZ = (700.0, 1400.0, 2800.0, 5000.0)


def build_tone_bundle(out: Path) -> Path:
    """Four tone 'species' (``sp00``..``sp03``, ``TONE_FREQS_HZ``) with a lenient unknown floor."""
    taxa = tone_taxa(len(TONE_FREQS_HZ))
    calls = {t.species_id: [tone_call(f)] for t, f in zip(taxa, TONE_FREQS_HZ, strict=True)}
    return build_tiny_bundle(out, taxa, calls, scoring=ScoringDefaults(unknown_similarity=0.5))


def tone_scape(
    events: list[tuple[float, int]], seconds: float, rate: int = 48_000, seed: int = 0
) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Background noise with tone calls: (start_s, species index) -> audio, ground truth."""
    rng = np.random.default_rng(seed)
    audio = rng.normal(0, 0.005, int(seconds * rate)).astype(np.float32)
    truth = []
    for start_s, species in events:
        call = tone_call(TONE_FREQS_HZ[species], rate)
        i = int(start_s * rate)
        audio[i : i + len(call)] += call
        truth.append((start_s, start_s + len(call) / rate, f"sp{species:02d}"))
    return audio, truth


def world_reference_bundle(
    out: Path, world, seed: int = 5, calls_per_species: int = 8, unknown_similarity: float = 0.6
) -> tuple[Path, list[Taxon]]:
    """A tiny-tower bundle for one seen species per genus of a ``biovita.world.World``.

    An untrained tower cannot tell sister species apart, so the reference keeps one species per
    genus: detection against ground truth is then meaningful without training a network.
    """
    one_per_genus: dict[str, Taxon] = {}
    for taxon in world.taxa:
        if taxon.species_id in world.seen_ids:
            one_per_genus.setdefault(taxon.genus, taxon)
    taxa = list(one_per_genus.values())
    rng = np.random.default_rng(seed)
    calls = {
        t.species_id: [world.call(t.species_id, rng) for _ in range(calls_per_species)]
        for t in taxa
    }
    scoring = ScoringDefaults(unknown_similarity=unknown_similarity)
    return build_tiny_bundle(out, taxa, calls, scoring=scoring), taxa
