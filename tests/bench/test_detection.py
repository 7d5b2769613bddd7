"""`biovita-bench detection` end to end: a real (tiny) ONNX bundle through the device pipeline."""

from __future__ import annotations

import json

from bench.cli import main
from bench.detection import DeviceClassifier, read_truth, run_detection


def test_device_classifier_finds_the_calls(bundle, scape, tmp_path):
    audio, truth = scape
    classifier = DeviceClassifier(bundle)
    result = run_detection(classifier, [(audio, truth)], tolerance_s=1.5, thresholds=(0.2, 0.99))
    overall = result.scores.overall
    assert result.truth_events == len(read_truth(truth)) == 6
    assert overall.recall == 1.0 and overall.precision >= 0.8, overall
    assert set(result.scores.per_species) == {"sp00", "sp01", "sp02", "sp03"}
    # every threshold replays the same windows: inference ran once per window
    assert result.windows_embedded == classifier.backend.embedded <= 45 / 1.5 + 2
    assert [p.threshold for p in result.curve] == sorted({0.2, 0.99, result.threshold})


def test_truth_elsewhere_means_no_hits(bundle, scape, tmp_path):
    audio, truth = scape
    shifted = tmp_path / "shifted.csv"
    shifted.write_text(
        "start_s,end_s,species_id\n"
        + "".join(f"{e.start_s + 5},{e.end_s + 5},{e.species_id}\n" for e in read_truth(truth))
    )
    result = run_detection(DeviceClassifier(bundle), [(audio, shifted)], 1.0, thresholds=(0.5,))
    assert result.scores.overall.tp == 0 and result.scores.overall.fn == 6


def test_cli_writes_table_json_and_pr_curve(bundle, scape, tmp_path, capsys):
    audio, truth = scape
    out = tmp_path / "det"
    code = main(
        [
            "detection",
            "--bundle",
            str(bundle),
            "--soundscape",
            str(audio),
            "--truth",
            str(truth),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "**overall (micro)**" in printed and "| sp02 |" in printed
    payload = json.loads((out / "detection.json").read_text())
    assert payload["overall"]["recall"] == 100.0
    assert len(payload["pr_curve"]) >= 19
    assert (out / "detection_pr.png").stat().st_size > 10_000


def test_cli_explains_a_missing_truth(bundle, scape, capsys):
    audio, _ = scape
    assert main(["detection", "--bundle", str(bundle), "--soundscape", str(audio)]) == 2
    assert "--soundscape needs --truth" in capsys.readouterr().err
