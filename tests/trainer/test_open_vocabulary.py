"""`biovita-train bank --taxa`: a species bank from a taxa table (and image folders), no manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from biovita.bank import SpeciesBank, l2_normalise
from biovita.manifest import write_taxa
from biovita.taxonomy import Taxon, prompts
from trainer.cli import main
from trainer.embed import load_embedder
from trainer.models.encoders import tiny_image_text
from trainer.models.vita import VitaModel

TAXA = [
    Taxon(species_id="gryllus_campestris", scientific_name="Gryllus campestris",
          common_name="field cricket", family="Gryllidae", genus="Gryllus"),
    Taxon(species_id="bufo_bufo", scientific_name="Bufo bufo", common_name="common toad",
          family="Bufonidae", genus="Bufo"),
    Taxon(species_id="sp3", scientific_name="Turdus merula", common_name="blackbird",
          family="Turdidae", genus="Turdus"),
]  # fmt: skip


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """An image-text checkpoint of the real classes (random weights): what the bank embeds with."""
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    return VitaModel(tiny_image_text(32, 32, width=32, layers=2)).save(path)


def _image(path: Path, colour: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), colour).save(path)
    return path


def test_bank_from_taxa_and_image_folders(teacher, tmp_path, capsys):
    taxa = write_taxa(tmp_path / "taxa.csv", TAXA)
    images = tmp_path / "images"
    _image(images / "gryllus_campestris" / "a.png", (200, 30, 30))
    _image(images / "Turdus_merula" / "x" / "b.jpg", (10, 10, 10))  # by scientific name, nested
    run = tmp_path / "run"
    args = ["bank", "--init", str(teacher), "--taxa", str(taxa), "--images", str(images)]
    assert main([*args, "--out", str(run), "--set", "bank.image_weight=0.5"]) == 0
    bank = SpeciesBank.load(capsys.readouterr().out.strip().splitlines()[-1])
    assert bank.ids == [t.species_id for t in TAXA]

    embedder = load_embedder(teacher)
    text = [l2_normalise(embedder.texts(prompts(t)).mean(axis=0)) for t in TAXA]
    # The toad has no images: text alone. The others mix in their image prototype.
    np.testing.assert_allclose(bank.embeddings[1], text[1], atol=1e-5)
    red = embedder.images([images / "gryllus_campestris" / "a.png"])[0]
    np.testing.assert_allclose(
        bank.embeddings[0], l2_normalise(0.5 * text[0] + 0.5 * red), atol=1e-5
    )
    assert abs(float(bank.embeddings[2] @ text[2])) < 0.9999


def test_text_only_bank_needs_no_manifest(teacher, tmp_path, capsys):
    taxa = write_taxa(tmp_path / "taxa.csv", TAXA)
    run = tmp_path / "run"
    assert main(["bank", "--init", str(teacher), "--taxa", str(taxa), "--out", str(run)]) == 0
    bank = SpeciesBank.load(run / "species.npz")
    assert len(bank) == 3 and bank.dim == 32


def test_an_image_folder_of_no_listed_species_is_named(teacher, tmp_path, capsys):
    taxa = write_taxa(tmp_path / "taxa.csv", TAXA)
    _image(tmp_path / "images" / "Pica_pica" / "a.png", (0, 0, 200))
    args = [
        "bank",
        "--init",
        str(teacher),
        "--taxa",
        str(taxa),
        "--images",
        str(tmp_path / "images"),
    ]
    assert main([*args, "--out", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err
    assert "Pica_pica" in err and "species_id" in err
