"""`biovita-export rebank`: give a bundle a new species bank without re-exporting its tower.

The tower (and any TensorRT engine, and the calibration windows) do not depend on the bank, so a
new species list only swaps ``species.npz``. The new bundle is staged beside the old one, its
manifest re-written (species count and source, a new bundle id, every sha256), and checked by
``biovita-export verify`` (parity on the stored windows, now scored against the new bank) before
it replaces the old one in one rename; a failure leaves the old bundle as it was.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

from biovita.bank import SpeciesBank
from biovita.bundle import (
    MANIFEST_NAME,
    SpeciesInfo,
    load_bundle,
    publish_bundle,
    seal_bundle,
    staging_dir_for,
)
from export.errors import ExportError, ParityError
from export.verify import verify_bundle

log = logging.getLogger(__name__)


def rebank_bundle(bundle_path: Path, bank_path: Path, out: Path | None = None) -> Path:
    """Write ``bundle_path`` with the bank ``bank_path`` to ``out`` (default: in place)."""
    bundle_path = Path(bundle_path)
    if out is None:
        if bundle_path.is_file():
            raise ExportError(
                f"{bundle_path} is a packed bundle; rebank cannot rewrite a .tar in place",
                hint="pass --out DIR for the re-banked bundle directory",
            )
        out = bundle_path
    bundle = load_bundle(bundle_path)
    manifest = bundle.manifest
    bank = SpeciesBank.load(bank_path)
    if bank.dim != manifest.tower.embedding_dim:
        raise ExportError(
            f"the bank {bank_path} has {bank.dim}-d embeddings but the bundle's tower outputs "
            f"{manifest.tower.embedding_dim}-d",
            hint="build the bank with the checkpoint this bundle was exported from "
            "(biovita-train bank --init TEACHER --taxa taxa.csv)",
        )
    scoring = manifest.scoring
    if scoring.fitted_on:
        log.warning(
            "the scoring defaults were fitted with the previous bank; re-fit them with "
            "`biovita-export calibrate --bundle %s SOUNDSCAPES`",
            out,
        )
        scoring = scoring.model_copy(
            update={"fitted_on": f"{scoring.fitted_on} (with the previous species bank)"}
        )
    staging = staging_dir_for(out)
    try:
        shutil.copytree(
            bundle.root, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MANIFEST_NAME)
        )
        bank.save(staging / manifest.species.file)
        new = manifest.model_copy(
            update={
                "bundle_id": uuid.uuid4().hex,
                "created_utc": datetime.now(timezone.utc),
                "species": SpeciesInfo(
                    file=manifest.species.file,
                    count=len(bank),
                    dim=bank.dim,
                    taxonomy_source=bank.source,
                ),
                "scoring": scoring,
            }
        )
        new = seal_bundle(staging, new)
        try:
            verify_bundle(staging, say=log.info)
        except ParityError as err:
            raise ParityError(
                f"with the new bank the bundle fails its parity check: {err}",
                hint="the INT8 tower was accepted against the previous bank; re-export from the "
                "checkpoint with this bank (biovita-export --bank NEW.npz) so the INT8 search "
                "is judged on it",
            ) from err
        published = publish_bundle(staging, new, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info(
        "bundle %s: bank of %d species replaced by %d (%s)",
        published,
        manifest.species.count,
        len(bank),
        bank_path,
    )
    return published
