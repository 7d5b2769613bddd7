"""`biovita-field classify`: detections match the ground truth; bad files are skipped clearly."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import soundfile

from device.cli import main
from device.store import Store

# BirdNET-Analyzer's selection table header, in its order
BIRDNET_RAVEN_COLUMNS = (
    "Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
    "High Freq (Hz)", "Common Name", "Species Code", "Confidence", "Begin Path", "File Offset (s)",
)  # fmt: skip


def _write_bad_files(folder: Path) -> dict[str, str]:
    """Each damaged file and the words its error must contain."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, 48_000 * 5).astype(np.float32)
    soundfile.write(folder / "a_full.wav", x, 48_000)
    full = (folder / "a_full.wav").read_bytes()
    (folder / "b_truncated.wav").write_bytes(full[: len(full) // 2])
    soundfile.write(folder / "c_full.flac", x, 48_000)
    flac = (folder / "c_full.flac").read_bytes()
    (folder / "c_truncated.flac").write_bytes(flac[: len(flac) // 2])
    (folder / "c_full.flac").unlink()
    (folder / "a_full.wav").unlink()
    (folder / "d_corrupt.wav").write_bytes(b"RIFF\0\0\0\0WAVEjunk" * 20)
    (folder / "e_empty.wav").write_bytes(b"")
    soundfile.write(folder / "f_no_samples.wav", np.zeros(0, np.float32), 48_000)
    nan = x.copy()
    nan[100_000:100_010] = np.nan
    soundfile.write(folder / "g_nan.wav", nan, 48_000, subtype="FLOAT")
    soundfile.write(folder / "h_8khz.wav", x[:40_000], 8_000)
    return {
        "b_truncated.wav": "is truncated",
        "c_truncated.flac": "damaged",
        "d_corrupt.wav": "cannot decode",
        "e_empty.wav": "cannot decode",
        "f_no_samples.wav": "no audio samples",
        "g_nan.wav": "NaN or infinite samples, the first at 2.083 s",
        "h_8khz.wav": "below the 16000 Hz the model needs",
    }


def _matches(rows, truth, tolerance_s: float = 0.0):
    """(true positives, detections, truth events): a detection matches a call it overlaps."""
    hit_truth = set()
    tp = 0
    for r in rows:
        start, end = float(r["start_s"]), float(r["end_s"])
        overlaps = [
            i
            for i, (s, e, sp) in enumerate(truth)
            if sp == r["species_id"] and start - tolerance_s < e and s < end + tolerance_s
        ]
        tp += bool(overlaps)
        hit_truth.update(overlaps)
    return tp, len(rows), len(hit_truth), len(truth)


def test_classify_finds_every_call_and_writes_all_four_formats(tone_bundle, scape_file, tmp_path):
    path, truth = scape_file
    out = tmp_path / "out"
    assert main(["classify", str(path), "--bundle", str(tone_bundle), "--out", str(out), "-q"]) == 0
    rows = list(csv.DictReader((out / "detections.csv").open()))
    tp, n, found, total = _matches(rows, truth)
    assert (tp, found) == (n, total) == (4, 4)  # precision 1, recall 1
    doc = json.loads((out / "detections.json").read_text())
    assert [d["species_id"] for d in doc["detections"]] == [r["species_id"] for r in rows]
    raven = (out / "scape.wav.biovita.selection.table.txt").read_text().splitlines()
    assert raven[0].split("\t") == list(BIRDNET_RAVEN_COLUMNS)
    first = dict(zip(BIRDNET_RAVEN_COLUMNS, raven[1].split("\t"), strict=True))
    assert len(raven) == 5 and (first["Species Code"], first["Common Name"]) == ("sp00", "Tone 0")
    assert (first["Low Freq (Hz)"], first["High Freq (Hz)"]) == ("50", "8000")  # f_min, f_max
    assert first["Begin Path"] == str(path.resolve()) and Path(first["Begin Path"]).is_absolute()
    labels = (out / "scape.wav.biovita.labels.txt").read_text().splitlines()
    start, end, label = labels[1].split("\t")
    assert float(start) <= 10.0 < 10.6 <= float(end) and label.startswith("Tone 1;")


def test_classify_goes_on_after_every_kind_of_bad_file(tone_bundle, scape_file, tmp_path, capsys):
    folder = tmp_path / "card"
    folder.mkdir()
    expected = _write_bad_files(folder)
    good, _ = scape_file
    (folder / "z_good.wav").write_bytes(good.read_bytes())
    out = tmp_path / "out"
    db = tmp_path / "log.db"
    argv = ["classify", str(folder), "--bundle", str(tone_bundle), "--out", str(out), "-q"]
    assert main([*argv, "--db", str(db)]) == 1  # some files failed
    captured = capsys.readouterr()
    printed = captured.err
    assert f"{len(expected)} file(s) failed:" in printed
    doc = json.loads((out / "detections.json").read_text())
    assert sorted(Path(f).name for f in doc["errors"]) == sorted(expected)
    for name, words in expected.items():
        message = doc["errors"][str(folder / name)]
        assert words in message, (name, message)
        assert "hint:" in message
        assert name in printed
    good_rows = [d for d in doc["detections"] if d["file"].endswith("z_good.wav")]
    assert [d["species_id"] for d in good_rows] == ["sp00", "sp01", "sp02", "sp03"]
    store = Store(db)
    assert store.counts()["detections"] == len(doc["detections"])
    store.close()
    tables = sorted(p.name for p in out.glob("*.biovita.*"))
    assert tables == [
        f"z_good.wav.biovita.{k}" for k in ("labels.txt", "results.csv", "selection.table.txt")
    ]
