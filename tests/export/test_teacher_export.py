"""`biovita-export --tower teacher`: the imported CLAP teacher, its CLAP front-end in the graph,
through the student's parity and TensorRT 10.3 op checks, then `verify` again."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest

from biovita.audio import load_audio
from biovita.bank import SpeciesBank
from biovita.bundle import TOWER_NAME, load_bundle
from biovita.frontend import ClapFrontendSpec, fit_window
from export.cli import main as export_main
from export.errors import ExportError
from export.opsupport import check_ops
from export.package import ExportRequest, export_bundle
from export.windows import WindowSources
from tests.biovita.test_bank import make_taxa
from tests.support.tiny_release import EMBED_DIM, write_tiny_release
from trainer.cli import main as train_main
from trainer.file_embeddings import embed_files


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> tuple:
    tmp = tmp_path_factory.mktemp("teacher")
    release = write_tiny_release(tmp)
    args = ["import-biovita", "--release", str(release.root), "--out", str(tmp / "run")]
    assert train_main([*args, "--clap-config", str(release.config)]) == 0
    rng = np.random.default_rng(0)
    bank = SpeciesBank(make_taxa(6), rng.standard_normal((6, EMBED_DIM)))
    return tmp / "run" / "stage2.pt", bank.save(tmp / "species.npz")


def test_the_teacher_exports_with_its_front_end_and_passes_the_checks(
    teacher, real_audio_dir, real_audio_files, tmp_path, capsys
):
    checkpoint, bank = teacher
    out = tmp_path / "bundle"
    args = ["--tower", "teacher", "--target", "jetson", "--checkpoint", str(checkpoint),
            "--bank", str(bank), "--out", str(out), "--audio", str(real_audio_dir)]  # fmt: skip
    assert export_main(args) == 0
    bundle = load_bundle(out)
    manifest = bundle.manifest
    assert manifest.frontend == ClapFrontendSpec()
    assert manifest.tower.input_samples == 480_000 and manifest.tower.precision == "fp32"
    assert [p.candidate for p in manifest.parity][0] == "onnxruntime-fp32"
    assert all(p.passed for p in manifest.parity)
    ops = check_ops(onnx.load(str(out / TOWER_NAME)), "10.3").ops
    assert not {"STFT", "DFT", "MelWeightMatrix"} & set(ops)

    # the graph computes what the checkpoint does on a file's first 10 s
    session = onnxruntime.InferenceSession(str(out / TOWER_NAME))
    pcm = fit_window(load_audio(real_audio_files[0], 48_000)[0], manifest.frontend)
    (graph,) = session.run(None, {"pcm": pcm[None].astype(np.float32)})
    expected = embed_files(checkpoint, [real_audio_files[0]]).embeddings
    assert float(graph[0] @ expected[0]) > 0.9999

    capsys.readouterr()
    assert export_main(["verify", str(out), "--trt-version", "10.3"]) == 0


def test_the_teacher_is_fp32_only(teacher, tmp_path):
    checkpoint, bank = teacher
    request = ExportRequest(
        checkpoint, bank, tmp_path / "b", "cpu", WindowSources(), precision="int8", tower="teacher"
    )
    with pytest.raises(ExportError, match="fp32 only") as err:
        export_bundle(request)
    assert "--fp16" in err.value.hint and not (tmp_path / "b").exists()
