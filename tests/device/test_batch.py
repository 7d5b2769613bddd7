"""`classify` over a card of files: parallel workers, per-file results, resume, names, the log."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import soundfile

from device.cli import main
from device.outputs import read_results_csv
from device.store import Store
from tests.support.tiny_bundle import tone_scape


def _classify(tone_bundle: Path, path: Path, out: Path, *extra: str) -> int:
    return main(
        ["classify", str(path), "--bundle", str(tone_bundle), "--out", str(out), "-q", *extra]
    )


def _card(tmp_path: Path, real_audio_files: list[Path], scape: Path) -> Path:
    card = tmp_path / "card"
    card.mkdir()
    for f in real_audio_files:
        shutil.copy(f, card / f.name)
    shutil.copy(scape, card / "scape.wav")
    return card


def test_two_workers_write_exactly_the_rows_of_one(
    tone_bundle, real_audio_files, scape_file, tmp_path
):
    card = _card(tmp_path, real_audio_files, scape_file[0])
    assert _classify(tone_bundle, card, tmp_path / "one", "--workers", "1") == 0
    assert _classify(tone_bundle, card, tmp_path / "two", "--workers", "2") == 0
    one = (tmp_path / "one" / "detections.csv").read_text()
    assert len(one.splitlines()) > 5  # the tone calls and whatever the real recordings trigger
    assert (tmp_path / "two" / "detections.csv").read_text() == one
    for table in (tmp_path / "one").glob("*.biovita.*"):
        assert (tmp_path / "two" / table.name).read_text() == table.read_text(), table.name


def _long_card(folder: Path, files: int, seconds: float) -> list[Path]:
    folder.mkdir()
    paths = []
    for i in range(files):
        audio, _ = tone_scape([(5.0, i % 4)], seconds, rate=16_000, seed=i)
        paths.append(folder / f"rec{i:02d}.wav")
        soundfile.write(paths[-1], audio, 16_000)
    return paths


def _wait_for(predicate, timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_killed_run_keeps_every_finished_file_and_resume_does_only_the_rest(
    tone_bundle, tmp_path, capsys
):
    files = _long_card(tmp_path / "card", 6, 240.0)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "device.cli", "classify", str(tmp_path / "card"), "--bundle"]
    argv += [str(tone_bundle), "--out", str(out), "-q"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: any(out.glob("*.results.csv")), what="the first file's results")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    done = sorted(out.glob("*.results.csv"))
    assert 0 < len(done) < len(files), "the run must be cut between files for this test"
    assert not (out / "detections.csv").exists()  # the combined tables come at the end
    stamps = {p: p.stat().st_mtime_ns for p in done}
    for p in done:  # each finished file is whole: its call is in it
        assert read_results_csv(p)

    assert _classify(tone_bundle, tmp_path / "card", out, "--resume") == 0
    summary = capsys.readouterr()
    assert f"{len(done)} file(s) skipped (--resume: results exist)" in summary.out
    assert f"--resume: skipping {len(done)} file(s) whose results exist" in summary.err
    assert {p: p.stat().st_mtime_ns for p in done} == stamps  # not classified again
    rows = list(csv.DictReader((out / "detections.csv").open()))
    assert sorted({Path(r["file"]).name for r in rows}) == [f.name for f in files]
    per_file = [r for f in files for r in read_results_csv(out / f"{f.name}.biovita.results.csv")]
    assert len(rows) == len(per_file)


def test_failed_files_exit_1_and_get_no_table(tone_bundle, scape_file, tmp_path, capsys):
    card = tmp_path / "card"
    card.mkdir()
    shutil.copy(scape_file[0], card / "good.wav")
    (card / "broken.wav").write_bytes(b"RIFF\0\0\0\0WAVEjunk" * 20)
    out = tmp_path / "out"
    assert _classify(tone_bundle, card, out) == 1
    err = capsys.readouterr().err
    assert "1 file(s) failed:" in err and f"error: {card / 'broken.wav'}: cannot decode" in err
    assert not list(out.glob("broken.wav.*"))
    assert (out / "good.wav.biovita.results.csv").is_file()


def test_names_keep_their_extension_sub_folders_mirror_and_hidden_files_are_skipped(
    tone_bundle, scape_file, tmp_path
):
    card = tmp_path / "card"
    (card / "sub").mkdir(parents=True)
    (card / ".Trashes").mkdir()
    audio, _ = soundfile.read(scape_file[0], dtype="float32")
    soundfile.write(card / "rec.wav", audio, 48_000)
    soundfile.write(card / "rec.flac", audio[: 48_000 * 12], 48_000)  # the first two calls
    soundfile.write(card / "sub" / "rec.wav", audio[: 48_000 * 5], 48_000)
    soundfile.write(card / ".Trashes" / "old.wav", audio, 48_000)
    soundfile.write(card / ".hidden.wav", audio, 48_000)
    (card / "._rec.wav").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X        " * 8)  # AppleDouble
    out = tmp_path / "out"
    assert _classify(tone_bundle, card, out) == 0  # the AppleDouble file is not even tried
    counts = {
        p.relative_to(out).as_posix(): len(read_results_csv(p)) for p in out.rglob("*.results.csv")
    }
    assert counts == {
        "rec.wav.biovita.results.csv": 4,
        "rec.flac.biovita.results.csv": 2,
        "sub/rec.wav.biovita.results.csv": 1,
    }


def test_raven_bands_follow_the_file_and_odd_names_cannot_break_the_tables(
    tone_bundle, scape_file, tmp_path
):
    card = tmp_path / "card"
    card.mkdir()
    audio, _ = soundfile.read(scape_file[0], dtype="float32")
    odd = card / "take\t1\nfinal.wav"
    soundfile.write(odd, audio, 48_000)
    import soxr

    soundfile.write(card / "low.wav", soxr.resample(audio, 48_000, 12_000), 12_000)
    out = tmp_path / "out"
    assert _classify(tone_bundle, card, out, "--set", "audio.min_rate_hz=12000") == 0
    table = (out / "take\t1\nfinal.wav.biovita.selection.table.txt").read_text().split("\n")
    assert len(table) == 6 and table[-1] == ""  # header, four rows, final newline
    row = table[1].split("\t")
    assert len(row) == 12 and row[10] == str(card.resolve() / "take\\t1\\nfinal.wav")
    labels = (out / "take\t1\nfinal.wav.biovita.labels.txt").read_text().splitlines()
    assert len(labels) == 4 and all(len(line.split("\t")) == 3 for line in labels)
    low = (out / "low.wav.biovita.selection.table.txt").read_text().splitlines()
    assert {line.split("\t")[6] for line in low[1:]} == {"6000"}  # the file's Nyquist, not 8000


def _detections(db: Path) -> list[dict]:
    store = Store(db)
    try:
        return list(store.db.query("SELECT id, start_utc, source_file, payload FROM detections"))
    finally:
        store.close()


def test_the_log_stores_each_detection_once_with_its_file_and_the_recording_time(
    tone_bundle, scape_file, tmp_path
):
    card = tmp_path / "card"
    card.mkdir()
    shutil.copy(scape_file[0], card / "20240501_053000.WAV")  # AudioMoth
    shutil.copy(scape_file[0], card / "SMU01234_20240502_210000.wav")  # Wildlife Acoustics
    shutil.copy(scape_file[0], card / "copied.wav")  # no time in the name
    db = tmp_path / "log.db"
    assert _classify(tone_bundle, card, tmp_path / "out", "--db", str(db)) == 0
    first = _detections(db)
    assert len(first) == 12
    by_file = {}
    for row in first:
        by_file.setdefault(Path(row["source_file"]).name, []).append(json.loads(row["payload"]))
    moth = sorted(by_file["20240501_053000.WAV"], key=lambda d: d["start_sample"])
    assert moth[0]["start_utc"].startswith("2024-05-01T05:30:0") and moth[0]["clock_synced"]
    assert all(d["clock_synced"] for d in by_file["SMU01234_20240502_210000.wav"])
    assert min(d["start_utc"] for d in by_file["SMU01234_20240502_210000.wav"]) > "2024-05-02T21"
    assert not any(d["clock_synced"] for d in by_file["copied.wav"])  # a guess from mtime
    assert all(Path(r["source_file"]).is_absolute() for r in first)

    store = Store(db)
    store.mark_delivered([r["id"] for r in first])
    store.close()
    assert _classify(tone_bundle, card, tmp_path / "again", "--db", str(db)) == 0
    store = Store(db)
    counts = store.counts()
    store.close()
    assert counts["detections"] == 12 and counts["outbox_detections"] == 0  # nothing new


def test_start_time_dates_one_file_and_is_refused_for_a_folder(
    tone_bundle, scape_file, tmp_path, capsys
):
    path, _ = scape_file
    db = tmp_path / "log.db"
    start = ["--start-time", "2026-05-01T06:00:00+02:00", "--db", str(db)]
    assert _classify(tone_bundle, path, tmp_path / "out", *start) == 0
    payloads = [json.loads(r["payload"]) for r in _detections(db)]
    first = min(payloads, key=lambda d: d["start_sample"])
    assert first["start_utc"].startswith("2026-05-01T04:00:0") and first["clock_synced"]
    shutil.copy(path, tmp_path / "second.wav")
    assert _classify(tone_bundle, tmp_path, tmp_path / "out", *start) == 2
    assert "--start-time gives one recording's start" in capsys.readouterr().err
