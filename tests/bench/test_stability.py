"""`biovita-bench stability`: shifted windows through a real (tiny) ONNX bundle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from bench.cli import main
from bench.stability import agreement, run_stability, shifts
from biovita.bank import SpeciesBank
from biovita.bundle import load_bundle
from biovita.errors import ManifestError
from tests.support.tiny_bundle import tone_taxa


def test_a_band_energy_tower_keeps_its_answer_when_the_window_moves(bundle, scape):
    rows = run_stability(bundle, [scape])
    by = {(r.change, r.kind): r for r in rows}
    assert {change for change, _ in by} == set(shifts(load_bundle(bundle).manifest.frontend))
    # 45 s at a 1.5 s hop, the last start 40.5 s (100 ms of shift must fit): 28 windows. A 0.6 s
    # tone at t lies whole in the windows starting in [t - 2.4, t]: one or two of them, 9 in all.
    # Background: no tone within the window plus 100 ms, 10 windows; the other 9 catch an edge.
    calls, background = by["1 sample", "calls"], by["1 sample", "background"]
    assert (calls.windows, background.windows) == (9, 10)
    # the tiny tower pools band energies over the window: a hop of shift barely moves it
    hop = next(c for c in shifts(load_bundle(bundle).manifest.frontend) if c.startswith("1 hop"))
    assert by["1 sample", "calls"].mean_cosine > 0.999
    assert by[hop, "calls"].top1_agreement == 1.0 and by[hop, "calls"].mean_cosine > 0.99


def test_agreement_counts_flips_and_splits_calls_from_background():
    taxa = tone_taxa(3)
    bank = SpeciesBank(taxa, np.eye(3, 4, dtype=np.float32))
    a = np.eye(3, 4, dtype=np.float32)[[0, 1, 2, 0]]
    b = np.eye(3, 4, dtype=np.float32)[[0, 2, 2, 1]]  # windows 1 and 3 flip
    is_call = np.array([True, True, False, False])
    calls, background = agreement("fp32", "x", a, b, is_call, bank)
    assert (calls.kind, calls.windows, calls.top1_agreement, calls.mean_cosine) == (
        "calls",
        2,
        0.5,
        0.5,
    )
    assert (background.windows, background.top1_agreement) == (2, 0.5)


def test_cli_writes_table_and_json(bundle, scape, tmp_path, capsys):
    audio, truth = scape
    out = tmp_path / "stab"
    argv = ["stability", "--bundle", str(bundle), "--soundscape", str(audio), "--truth", str(truth)]
    assert main([*argv, "--out", str(out)]) == 0
    assert "| fp32 | itself shifted 1 hop (20 ms) |" in capsys.readouterr().out
    payload = json.loads((out / "stability.json").read_text())
    assert len(payload["rows"]) == 2 * len(shifts(load_bundle(bundle).manifest.frontend))


def test_soundscapes_shorter_than_a_window_are_refused(bundle, tmp_path):
    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(16_000 * 3, np.float32), 16_000)  # 3 s: no room for 100 ms
    (tmp_path / "short.csv").write_text("start_s,end_s,species_id\n")
    with pytest.raises(ManifestError, match="no soundscape holds a window"):
        run_stability(bundle, [(short, tmp_path / "short.csv")])
