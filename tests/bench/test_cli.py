"""`biovita-bench` on real trainer checkpoints and an exported bundle (tiny, built in seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main
from export.cli import main as export_main
from tests.bench.run import make_run
from tests.export.student import make_world

pytestmark = pytest.mark.slow  # builds a world, a run and a bundle: about a minute on 2 cores


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(world, run folder, cpu bundle exported from run/student.pt)."""
    root = tmp_path_factory.mktemp("bench-cli")
    world = make_world(root)
    run = make_run(world, root / "run")
    bundle = root / "bundle"
    args = ["export", "--target", "cpu", "--checkpoint", str(run / "student.pt"),
            "--bank", str(run / "student-only" / "species.npz"), "--out", str(bundle),
            "--clips", str(world), "--precision", "fp32"]  # fmt: skip
    assert export_main(args) == 0
    return world, run, bundle


def test_retrieval_rows_chain_and_bundle_parity(run, tmp_path, capsys):
    world, run_dir, bundle = run
    out = tmp_path / "retrieval"
    code = main(
        ["retrieval", "--world", str(world), "--checkpoint", str(run_dir / "stage2.pt"),
         "--checkpoint", str(run_dir / "student.pt"), "--bundle", str(bundle), "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "retrieval.json").read_text())
    rows = report["splits"]["seen"]
    assert {"chance", "stage2", "student", "zero-shot chain"} <= set(rows)
    assert rows["zero-shot chain"]["kind"] == "baseline"
    fp32 = "bundle fp32 (ONNX Runtime)"
    assert rows[fp32]["kind"] == "bundle"
    assert report["parity"][fp32] == {"reference": "student", "max_abs_top1_points": 0.0}
    assert f"parity: {fp32} vs student: max |dTop-1| = 0.00 points (within" in printed
    student = {(t["level"], t["direction"]): t for t in rows["student"]["tasks"]}
    assert len(student) == 18 and student[("species", "A2T")]["n"] > 0
    # the written lists are what was scored: re-running on them gives the same numbers
    again = tmp_path / "again"
    assert main(["retrieval", "--bench", str(out / "lists"), "--checkpoint",
                 str(run_dir / "student.pt"), "--no-chain", "--out", str(again)]) == 0  # fmt: skip
    rerun = json.loads((again / "retrieval.json").read_text())["splits"]["seen"]["student"]
    assert rerun["tasks"] == rows["student"]["tasks"]


def test_traits_and_consistency_reports(run, tmp_path, capsys):
    world, run_dir, _ = run
    assert main(["traits", "--world", str(world), "--checkpoint", str(run_dir / "stage2.pt"),
                 "--out", str(tmp_path / "t")]) == 0  # fmt: skip
    traits = json.loads((tmp_path / "t" / "traits.json").read_text())
    assert set(traits["accuracy"]["stage2"]) >= {"diet", "habitat"}
    assert (tmp_path / "t" / "traits.png").is_file()
    assert main(["consistency", "--world", str(world), "--checkpoint",
                 str(run_dir / "student.pt"), "--out", str(tmp_path / "c")]) == 0  # fmt: skip
    rows = json.loads((tmp_path / "c" / "consistency.json").read_text())["seen"]["student"]
    assert [r["direction"] for r in rows] == ["A2T", "T2A", "A2I", "I2A", "I2T", "T2I"]
    assert "genus right (% of wrong)" in capsys.readouterr().out


def test_bundle_from_another_checkpoint_is_refused(run, tmp_path, capsys):
    world, run_dir, bundle = run
    code = main(["retrieval", "--world", str(world), "--checkpoint", str(run_dir / "stage2.pt"),
                 "--bundle", str(bundle), "--out", str(tmp_path)])  # fmt: skip
    assert code == 2
    assert "none of the checkpoints given is the one bundle" in capsys.readouterr().err


def test_retrieval_without_a_model_says_what_to_pass(tmp_path, capsys):
    assert main(["retrieval", "--world", str(tmp_path)]) == 2
    assert "pass --checkpoint" in capsys.readouterr().err


def test_retrieval_counts_broken_media_and_scores_an_image_text_model(run, tmp_path, capsys):
    """A published benchmark with a missing and an undecodable file is scored, not aborted; an
    image/text model (in the open_clip folder layout, like vanilla BioCLIP 2) gets I<->T rows."""
    import shutil

    from bench.protocol import read_index
    from trainer.models.encoders import save_image_text_dir
    from trainer.models.vita import VitaModel

    world, run_dir, _ = run
    world = Path(shutil.copytree(world, tmp_path / "world"))
    first = tmp_path / "first"
    assert main(["retrieval", "--world", str(world), "--checkpoint", str(run_dir / "stage2.pt"),
                 "--no-chain", "--out", str(first)]) == 0  # fmt: skip
    index = read_index(first / "lists" / "seen" / "ids")
    missing = index.audio[min(index.audio)]
    missing.unlink()
    broken = index.image[min(index.image)]
    broken.write_bytes(b"not an image")
    oc = save_image_text_dir(VitaModel.load(run_dir / "stage0.pt")[0].image_text, tmp_path / "oc")
    capsys.readouterr()
    out = tmp_path / "second"
    assert main(["retrieval", "--bench", str(first / "lists"), "--checkpoint",
                 str(run_dir / "stage2.pt"), "--checkpoint", str(oc), "--no-chain",
                 "--crop", "onset10", "--out", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "1 audio file(s) missing or undecodable" in printed and missing.name in printed
    assert "1 image file(s) missing or undecodable" in printed
    report = json.loads((out / "retrieval.json").read_text())
    assert report["unreadable_media"]["seen"]["audio"]["count"] == 1 and report["crop"] == "onset10"
    rows = report["splits"]["seen"]
    assert {t["direction"] for t in rows["oc"]["tasks"]} == {"I2T", "T2I"}
    stage2 = {(t["level"], t["direction"]): t for t in rows["stage2"]["tasks"]}
    assert stage2[("species", "A2T")]["skipped"]["query_not_embedded"] >= 1
