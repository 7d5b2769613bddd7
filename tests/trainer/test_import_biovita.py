"""import-biovita and embed on a tiny release the test writes in the released layout itself.

The layout is risashinoda/BioVITA's: open_clip_config.json + open_clip weights, and
clap_weights.pth = {"clap_audio": <ClapModel state dict>, "audio_adapter": {"weight": [D, P]}}.
The imported teacher must embed real recordings as transformers does it, independently of this
project's code: ClapFeatureExtractor -> ClapModel.get_audio_features -> adapter -> L2 norm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from biovita.audio import load_audio
from biovita.crop import ONSET_PREROLL_S, crop_window, onset_start
from biovita.frontend import ClapFrontendSpec
from tests.support.tiny_release import EMBED_DIM, TinyRelease, write_tiny_release
from tests.trainer.clap_reference import clap_extractor
from trainer.cli import main
from trainer.models.encoders import save_image_text_dir
from trainer.models.vita import VitaModel
from trainer.release import CLAP_WEIGHTS, ReleaseError, import_biovita


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> TinyRelease:
    return write_tiny_release(tmp_path_factory.mktemp("biovita-release"))


@torch.no_grad()
def transformers_embedding(release: TinyRelease, path: Path) -> np.ndarray:
    pcm = load_audio(path, 48_000)[0][:480_000]  # <= 10 s: the extractor is deterministic
    features = clap_extractor()(pcm, sampling_rate=48_000, return_tensors="pt")
    out = release.clap.get_audio_features(input_features=features["input_features"])
    audio = out if isinstance(out, torch.Tensor) else out.pooler_output
    return torch.nn.functional.normalize(audio @ release.adapter.T, dim=-1)[0].numpy()


def test_the_imported_teacher_embeds_as_transformers_does(release, real_audio_files, tmp_path):
    run = tmp_path / "run"
    args = ["import-biovita", "--release", str(release.root), "--out", str(run)]
    assert main([*args, "--clap-config", str(release.config)]) == 0
    teacher, meta = VitaModel.load(run / "stage2.pt")
    assert teacher.audio.frontend == ClapFrontendSpec() and meta["dropped_clap_keys"] > 0

    out = tmp_path / "emb.npz"
    assert main(["embed", "--init", str(run / "stage2.pt"), "--out", str(out),
                 *map(str, real_audio_files)]) == 0  # fmt: skip
    saved = np.load(out)
    assert list(saved["files"]) == [str(f) for f in real_audio_files]
    assert saved["embeddings"].shape == (len(real_audio_files), EMBED_DIM)
    np.testing.assert_allclose(np.linalg.norm(saved["embeddings"], axis=1), 1.0, atol=1e-5)
    for path, ours in zip(real_audio_files, saved["embeddings"], strict=True):
        expected = transformers_embedding(release, path)
        assert float(ours @ expected) > 0.9999, path.name
        assert np.abs(ours - expected).max() < 2e-3, path.name

    tokens = release.image_text.tokenize(["Aves Passeriformes Turdidae Turdus merula"])
    with torch.no_grad():
        original = release.image_text.model.eval().encode_text(tokens)
        imported = teacher.clip.encode_text(tokens)
    torch.testing.assert_close(original, imported)


def _broken_release(release: TinyRelease, tmp_path: Path, change) -> Path:
    root = tmp_path / "broken"
    save_image_text_dir(release.image_text, root)
    payload = {"clap_audio": dict(release.clap.state_dict()),
               "audio_adapter": {"weight": release.adapter}}  # fmt: skip
    change(payload)
    torch.save(payload, root / CLAP_WEIGHTS)
    return root


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p["clap_audio"].pop("audio_projection.linear1.weight"), "1 missing: audio_proj"),
        (lambda p: p["clap_audio"].update({"audio_projection.linear2.weight": torch.ones(3, 3)}),
         r"mis-shaped: audio_projection.linear2.weight \(3, 3\) \(model: \(16, 16\)\)"),
        (lambda p: p["audio_adapter"].update({"weight": torch.ones(EMBED_DIM, 7)}), r"\[24, 7\]"),
        (lambda p: p.pop("audio_adapter"), "lacks audio_adapter"),
    ],
)  # fmt: skip
def test_a_broken_release_names_the_bad_keys(release, tmp_path, change, message):
    root = _broken_release(release, tmp_path, change)
    with pytest.raises(ReleaseError, match=message) as err:
        import_biovita(root, release.config)
    assert err.value.hint


def test_the_default_architecture_is_clap_htsat_unfused(release):
    # the tiny weights do not fit clap-htsat-unfused: the error says which and what to do
    with pytest.raises(ReleaseError, match="mis-shaped") as err:
        import_biovita(release.root)
    assert "--clap-config" in err.value.hint


def test_the_onset_crop_starts_just_before_the_first_call():
    rate = 48_000
    spec = ClapFrontendSpec()
    call = 0.5 * np.sin(2 * np.pi * 3000 * np.arange(2 * rate) / rate)
    pcm = np.concatenate([1e-4 * np.ones(3 * rate), call, np.zeros(rate)]).astype(np.float32)
    assert onset_start(pcm, rate) == 3 * rate - int(ONSET_PREROLL_S * rate) + 1
    window = crop_window(pcm, spec, "onset10")
    assert len(window) == spec.window_samples
    # 3.2 s of the file remain after the start: the rest is zeros (the official crop pads so)
    assert not window[int(3.3 * rate) :].any() and window[: int(3.1 * rate)].any()
    np.testing.assert_array_equal(crop_window(pcm, spec, "first")[: len(pcm)], pcm)
