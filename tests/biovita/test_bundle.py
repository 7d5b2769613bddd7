"""The bundle contract: atomic publish, every hash checked, unknown schema refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from biovita.bank import SpeciesBank
from biovita.bundle import (
    BUNDLE_SCHEMA_VERSION,
    MANIFEST_NAME,
    EngineEntry,
    Manifest,
    SpeciesInfo,
    TowerSpec,
    load_bundle,
    pack_tar,
    publish_bundle,
    staging_dir_for,
)
from biovita.errors import BundleError, SchemaVersionError
from biovita.frontend import ClapFrontendSpec, FrontendSpec
from tests.biovita.test_bank import make_taxa


def build(out: Path, n_species: int = 4, dim: int = 8) -> Path:
    staging = staging_dir_for(out)
    (staging / "audio_tower.onnx").write_bytes(b"onnx bytes stand in here: biovita never parses")
    bank = SpeciesBank(make_taxa(n_species), np.eye(n_species, dim))
    bank.save(staging / "species.npz")
    (staging / "calibration").mkdir()
    np.save(staging / "calibration" / "windows.npy", np.zeros((2, 48_000), np.float32))
    manifest = Manifest(
        target="jetson",
        frontend=FrontendSpec(),
        tower=TowerSpec(input_samples=48_000, embedding_dim=dim),
        species=SpeciesInfo(count=n_species, dim=dim),
        calibration_dir="calibration",
    )
    return publish_bundle(staging, manifest, out)


def test_round_trip_hashes_every_file(tmp_path):
    root = build(tmp_path / "bundle")
    bundle = load_bundle(root)
    assert set(bundle.manifest.files) == {
        "audio_tower.onnx",
        "species.npz",
        "calibration/windows.npy",
    }
    assert bundle.manifest.schema_version == BUNDLE_SCHEMA_VERSION
    assert len(bundle.bank) == 4 and bundle.tower_path.is_file()
    assert not list(tmp_path.glob(".bundle.staging-*")), "staging dir must be renamed away"


@pytest.mark.parametrize("victim", ["audio_tower.onnx", "species.npz", "calibration/windows.npy"])
def test_a_tampered_file_is_refused_by_name(tmp_path, victim):
    root = build(tmp_path / "bundle")
    with (root / victim).open("ab") as f:
        f.write(b"\x00")
    with pytest.raises(BundleError, match=victim) as err:
        load_bundle(root)
    assert "re-export" in err.value.hint or "copy" in err.value.hint


def test_a_missing_file_is_refused(tmp_path):
    root = build(tmp_path / "bundle")
    (root / "species.npz").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(root)


def test_unknown_schema_version_is_refused_before_anything_else(tmp_path):
    root = build(tmp_path / "bundle")
    raw = json.loads((root / MANIFEST_NAME).read_text())
    raw["schema_version"] = 99
    raw["an_unknown_future_field"] = True
    (root / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(SchemaVersionError, match="99") as err:
        load_bundle(root)
    assert "re-export" in err.value.hint


@pytest.mark.parametrize("version", [1, 2])
def test_older_manifests_still_load(tmp_path, version):
    """Versions 2 and 3 only added optional fields (float_layers; the front-end's kind and
    padding): bundles exported before them keep working, their front-end a biovita one."""
    root = build(tmp_path / "bundle")
    raw = json.loads((root / MANIFEST_NAME).read_text())
    assert raw["schema_version"] == BUNDLE_SCHEMA_VERSION == 3
    assert raw["frontend"]["kind"] == "biovita"
    old_frontend = {k: v for k, v in raw["frontend"].items() if k not in ("kind", "padding")}
    old = {**raw, "schema_version": version, "frontend": old_frontend}
    (root / MANIFEST_NAME).write_text(json.dumps(old))
    manifest = load_bundle(root).manifest
    assert manifest.schema_version == version and manifest.frontend == FrontendSpec()


def test_a_clap_front_end_is_recorded_by_kind(tmp_path):
    root = build(tmp_path / "bundle")
    raw = json.loads((root / MANIFEST_NAME).read_text())
    raw["frontend"] = ClapFrontendSpec().model_dump()
    (root / MANIFEST_NAME).write_text(json.dumps(raw))
    assert load_bundle(root).manifest.frontend == ClapFrontendSpec()
    raw["frontend"]["kind"] = "mfcc"
    (root / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="mfcc"):
        load_bundle(root)


@pytest.mark.parametrize(
    "mutilate",
    [
        lambda raw: "{ not json",
        lambda raw: json.dumps({**raw, "tower": {"input_samples": -5, "embedding_dim": 8}}),
        lambda raw: json.dumps([1, 2, 3]),
    ],
)
def test_a_damaged_manifest_is_refused(tmp_path, mutilate):
    root = build(tmp_path / "bundle")
    raw = json.loads((root / MANIFEST_NAME).read_text())
    (root / MANIFEST_NAME).write_text(mutilate(raw))
    with pytest.raises(BundleError):
        load_bundle(root)


def test_bank_that_disagrees_with_the_manifest_is_refused(tmp_path):
    root = build(tmp_path / "bundle")
    bundle = load_bundle(root)
    SpeciesBank(make_taxa(5), np.eye(5, 8)).save(root / "species.npz")
    bundle.update_manifest(lambda m: m)  # re-hash: only the count check can catch it now
    with pytest.raises(BundleError, match="5x8"):
        load_bundle(root)


def test_republishing_replaces_the_old_bundle_atomically(tmp_path):
    out = tmp_path / "bundle"
    first = load_bundle(build(out)).manifest.bundle_id
    second = load_bundle(build(out, n_species=3)).manifest.bundle_id
    assert first != second and len(load_bundle(out).bank) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_an_unfinished_staging_dir_is_not_a_bundle(tmp_path):
    staging = staging_dir_for(tmp_path / "bundle")
    (staging / "audio_tower.onnx").write_bytes(b"half written")
    with pytest.raises(BundleError, match="not a bundle"):
        load_bundle(staging)
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "bundle")


def test_tar_bundles_load_and_are_verified(tmp_path):
    root = build(tmp_path / "bundle")
    tar = pack_tar(root, tmp_path / "bundle.tar")
    assert load_bundle(tar).manifest == load_bundle(root).manifest
    tar.write_bytes(b"garbage")
    with pytest.raises(BundleError, match="unpack"):
        load_bundle(tar)


def test_engine_entries_must_name_a_file_in_the_bundle(tmp_path):
    bundle = load_bundle(build(tmp_path / "bundle"))
    entry = EngineEntry(
        file="engines/x.engine",
        tensorrt_version="10.3.0",
        compute_capability="8.7",
        precision="fp16",
        built_utc="2026-11-23T00:00:00Z",
    )
    with pytest.raises(BundleError, match="engines/x.engine"):
        bundle.update_manifest(lambda m: m.model_copy(update={"engines": [entry]}))
    (bundle.root / "engines").mkdir()
    (bundle.root / "engines" / "x.engine").write_bytes(b"plan")
    bundle.update_manifest(lambda m: m.model_copy(update={"engines": [entry]}))
    assert load_bundle(bundle.root).manifest.engines[0].compute_capability == "8.7"
