"""`biovita-export rebank`: a new species list in a bundle without re-exporting its tower."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from biovita.bank import SpeciesBank
from biovita.bundle import TOWER_NAME, load_bundle, sha256_file
from biovita.taxonomy import Taxon
from export.cli import main


@pytest.fixture
def bundle_copy(cpu_bundle, tmp_path) -> Path:
    return Path(shutil.copytree(cpu_bundle, tmp_path / "bundle"))


def test_rebank_swaps_the_bank_rehashes_and_verifies(bundle_copy, tmp_path, capsys):
    old = load_bundle(bundle_copy)
    tower_hash = sha256_file(bundle_copy / TOWER_NAME)
    # A smaller, reordered species list, as a new site's bank would be.
    keep = old.bank.ids[::-1][: len(old.bank) - 2]
    subset = old.bank.subset(keep)
    new_bank = SpeciesBank(subset.taxa, subset.embeddings, source="new site")
    new_bank.save(tmp_path / "site.npz")

    assert main(["rebank", "--bundle", str(bundle_copy), "--bank", str(tmp_path / "site.npz")]) == 0
    assert "verified" in capsys.readouterr().out
    rebanked = load_bundle(bundle_copy)  # hashes checked on load
    manifest = rebanked.manifest
    assert manifest.bundle_id != old.manifest.bundle_id
    assert manifest.species.count == len(keep) and manifest.species.taxonomy_source == "new site"
    assert rebanked.bank.ids == keep
    np.testing.assert_allclose(rebanked.bank.embeddings, new_bank.embeddings)
    assert sha256_file(bundle_copy / TOWER_NAME) == tower_hash  # the tower is untouched
    assert manifest.files[TOWER_NAME] == tower_hash
    assert main(["verify", str(bundle_copy)]) == 0
    assert "verify: ok" in capsys.readouterr().out


def test_rebank_refuses_a_bank_of_another_dim_and_keeps_the_bundle(bundle_copy, tmp_path, capsys):
    before = (bundle_copy / "manifest.json").read_bytes()
    taxa = load_bundle(bundle_copy).bank.taxa
    dim = load_bundle(bundle_copy).manifest.tower.embedding_dim + 8
    wrong = SpeciesBank(taxa, np.random.default_rng(0).standard_normal((len(taxa), dim)))
    wrong.save(tmp_path / "wrong.npz")

    assert (
        main(["rebank", "--bundle", str(bundle_copy), "--bank", str(tmp_path / "wrong.npz")]) != 0
    )
    err = capsys.readouterr().err
    assert f"{dim}-d embeddings" in err and "biovita-train bank" in err
    assert (bundle_copy / "manifest.json").read_bytes() == before
    assert not list(bundle_copy.parent.glob(".bundle.staging-*"))
    load_bundle(bundle_copy)


def test_a_bank_the_int8_tower_misses_its_bar_on_is_refused(bundle_copy, tmp_path, capsys):
    """Parity is re-judged on the new bank: a crowd of near-tied prototypes moves INT8 top-1.

    A thousand random directions in the tower's small space leave every window's best two
    species a hair apart, so the INT8 tower's error flips most of its top-1 answers.
    """
    before = (bundle_copy / "manifest.json").read_bytes()
    dim = load_bundle(bundle_copy).bank.dim
    taxa = [Taxon(species_id=f"sp{i:04d}", scientific_name=f"Species {i}") for i in range(1000)]
    crowd = np.random.default_rng(0).standard_normal((len(taxa), dim))
    scrambled = SpeciesBank(taxa, crowd)
    scrambled.save(tmp_path / "scrambled.npz")
    args = ["rebank", "--bundle", str(bundle_copy), "--bank", str(tmp_path / "scrambled.npz")]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "with the new bank the bundle fails its parity check" in err and "re-export" in err
    assert (bundle_copy / "manifest.json").read_bytes() == before


def test_rebank_to_another_folder_leaves_the_original(bundle_copy, tmp_path):
    bank = load_bundle(bundle_copy).bank
    fewer = bank.ids[1:]
    bank.subset(fewer).save(tmp_path / "fewer.npz")
    out = tmp_path / "fewer"
    args = ["rebank", "--bundle", str(bundle_copy), "--bank", str(tmp_path / "fewer.npz")]
    assert main([*args, "--out", str(out)]) == 0
    assert load_bundle(out).manifest.species.count == len(fewer)
    assert load_bundle(bundle_copy).manifest.species.count == len(bank)
