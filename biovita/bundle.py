"""The deployable bundle: a directory (or .tar of it) that describes itself.

Layout::

    manifest.json        this module's Manifest (schema-versioned)
    audio_tower.onnx     raw PCM [B, samples] -> L2-normalised embedding [B, D], log-mel in graph
    species.npz          the species bank (biovita.bank)
    engines/*.engine     optional TensorRT engines, one manifest entry each
    calibration/*.npy    optional calibration windows (INT8 engine build on the target)

Loading checks the schema version first, then the sha256 of every file the manifest lists, then
the species bank against the manifest; any mismatch raises ``BundleError`` naming the file and the
fix. Bundles are published atomically: files are staged in a sibling directory and renamed into
place, so a crash mid-export never leaves a half bundle that loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from biovita.bank import SpeciesBank
from biovita.errors import BundleError, SchemaVersionError
from biovita.frontend import AnyFrontendSpec

# 2 added quantisation.float_layers; 3 added frontend.kind and frontend.padding (the CLAP
# front-end; a front-end without a kind is the biovita one). A reader takes every version it
# knows how to read: a version-1 or -2 manifest is a valid version-3 one, while an older reader
# refuses a newer manifest by its version number (a clear message) rather than by an unknown field.
BUNDLE_SCHEMA_VERSION = 3
READABLE_SCHEMA_VERSIONS = (1, 2, 3)
MANIFEST_NAME = "manifest.json"
TOWER_NAME = "audio_tower.onnx"
SPECIES_NAME = "species.npz"

Precision = Literal["fp32", "fp16", "int8"]
Target = Literal["jetson", "cpu", "rpi"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Provenance(_Strict):
    git_commit: str = ""
    recipe: str = ""
    checkpoint_sha256: str = ""
    teacher: str = ""
    created_by: str = ""


class TowerSpec(_Strict):
    """The ONNX audio tower: file, tensor names and shapes."""

    file: str = TOWER_NAME
    input_name: str = "pcm"
    output_name: str = "embedding"
    input_samples: int = Field(gt=0)
    embedding_dim: int = Field(gt=0)
    precision: Precision = "fp32"
    opset: int = 17
    parameters: int = 0


class ParityReport(_Strict):
    """How closely one implementation reproduces another on the same windows."""

    reference: str
    candidate: str
    windows: int
    max_abs_diff: float
    min_cosine: float
    mean_cosine: float
    top1_agreement: float | None = None
    tolerance_max_abs: float | None = None
    tolerance_min_cosine: float | None = None
    tolerance_min_top1: float | None = None
    passed: bool = True


class QuantisationReport(_Strict):
    method: str
    calibration_windows: int
    cosine_to_fp32_min: float
    cosine_to_fp32_mean: float
    top1_agreement: float
    threshold_top1_agreement: float
    evaluated_on: str = ""
    float_layers: list[str] = Field(
        default_factory=list, description="convolutions kept in float by the mixed-precision search"
    )


class SpeciesInfo(_Strict):
    file: str = SPECIES_NAME
    count: int = Field(gt=0)
    dim: int = Field(gt=0)
    taxonomy_source: str = ""


class ScoringDefaults(_Strict):
    """What the device uses unless its config says otherwise."""

    temperature: float = Field(0.05, gt=0)
    threshold: float = Field(0.5, ge=0, le=1, description="minimum calibrated score")
    unknown_similarity: float = Field(0.0, ge=-1, le=1, description="below this: 'unknown'")
    top_k: int = Field(5, ge=1)
    confirm_hits: int = Field(1, ge=1, description="N: a species passes in N ...")
    confirm_windows: int = Field(1, ge=1, description="... of the last M windows to be reported")
    fitted_on: str = Field(
        "", description="how these values were fitted (biovita-export calibrate); empty: defaults"
    )

    @model_validator(mode="after")
    def _confirmable(self) -> ScoringDefaults:
        if self.confirm_hits > self.confirm_windows:
            raise ValueError("confirm_hits must not exceed confirm_windows")
        return self


class EngineEntry(_Strict):
    """One TensorRT engine built on a target; valid only for that TensorRT version and GPU."""

    file: str
    tensorrt_version: str
    compute_capability: str
    precision: Precision
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    parity: ParityReport | None = None
    built_utc: datetime


class Manifest(_Strict):
    schema_version: int = BUNDLE_SCHEMA_VERSION
    bundle_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    target: Target = "cpu"
    created_utc: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    provenance: Provenance = Field(default_factory=Provenance)
    frontend: AnyFrontendSpec = Field(description="the tower's front-end, computed in its graph")
    tower: TowerSpec
    alternates: list[TowerSpec] = Field(default_factory=list)
    species: SpeciesInfo
    scoring: ScoringDefaults = Field(default_factory=ScoringDefaults)
    parity: list[ParityReport] = Field(default_factory=list)
    quantisation: QuantisationReport | None = None
    calibration_dir: str | None = None
    engines: list[EngineEntry] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict, description="relative path -> sha256")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _bundle_files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    )


def _write_manifest(root: Path, manifest: Manifest) -> None:
    tmp = root / (MANIFEST_NAME + ".tmp")
    tmp.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, root / MANIFEST_NAME)


def seal_bundle(staging: Path, manifest: Manifest) -> Manifest:
    """Hash every file in ``staging`` and write the manifest there: the staging directory then
    loads (and verifies) as a bundle before it is published."""
    staging = Path(staging)
    manifest = manifest.model_copy(
        update={"files": {name: sha256_file(staging / name) for name in _bundle_files(staging)}}
    )
    _check_declared_files(staging, manifest)
    _write_manifest(staging, manifest)
    return manifest


def publish_bundle(staging: Path, manifest: Manifest, out: Path) -> Path:
    """Seal ``staging`` (``seal_bundle``) and move it to ``out`` atomically.

    An existing bundle at ``out`` is replaced only after the new one is complete.
    """
    staging, out = Path(staging), Path(out)
    seal_bundle(staging, manifest)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)
    return out


def staging_dir_for(out: Path) -> Path:
    """A fresh sibling directory of ``out`` (same filesystem, so the final rename is atomic)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))


def _check_declared_files(root: Path, manifest: Manifest) -> None:
    declared = [manifest.tower.file, manifest.species.file]
    declared += [t.file for t in manifest.alternates] + [e.file for e in manifest.engines]
    for name in declared:
        if name not in manifest.files:
            raise BundleError(
                f"bundle {root}: manifest names {name} but the bundle has no such file",
                hint="re-export the bundle with biovita-export",
            )


def pack_tar(bundle_dir: Path, tar_path: Path) -> Path:
    """Pack a bundle directory as an uncompressed .tar (ONNX does not compress well)."""
    tar_path = Path(tar_path)
    tmp = tar_path.with_name(tar_path.name + ".tmp")
    with tarfile.open(tmp, "w") as tar:
        for name in [MANIFEST_NAME, *_bundle_files(Path(bundle_dir))]:
            tar.add(Path(bundle_dir) / name, arcname=name)
    os.replace(tmp, tar_path)
    return tar_path


class Bundle:
    """A loaded, verified bundle."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        self.root = root
        self.manifest = manifest
        self._bank: SpeciesBank | None = None

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def tower_path(self) -> Path:
        return self.root / self.manifest.tower.file

    @property
    def bank(self) -> SpeciesBank:
        if self._bank is None:
            bank = SpeciesBank.load(self.root / self.manifest.species.file)
            info = self.manifest.species
            if len(bank) != info.count or bank.dim != info.dim:
                raise BundleError(
                    f"bundle {self.root}: species bank is {len(bank)}x{bank.dim} but the "
                    f"manifest says {info.count}x{info.dim}",
                    hint="re-export the bundle with biovita-export",
                )
            if bank.dim != self.manifest.tower.embedding_dim:
                raise BundleError(
                    f"bundle {self.root}: species bank dim {bank.dim} != tower output dim "
                    f"{self.manifest.tower.embedding_dim}",
                    hint="the bank and the tower come from different models; re-export",
                )
            self._bank = bank
        return self._bank

    def verify_hashes(self) -> None:
        for name, expected in self.manifest.files.items():
            path = self.root / name
            if not path.is_file():
                raise BundleError(
                    f"bundle {self.root}: {name} is missing",
                    hint="copy the whole bundle again, or re-export it",
                )
            actual = sha256_file(path)
            if actual != expected:
                raise BundleError(
                    f"bundle {self.root}: {name} has sha256 {actual[:12]}... but the manifest "
                    f"says {expected[:12]}...: the file was changed or damaged",
                    hint="copy the bundle again from its source, or re-export it",
                )
        _check_declared_files(self.root, self.manifest)

    def update_manifest(self, change: Callable[[Manifest], Manifest]) -> Manifest:
        """Apply ``change`` and re-hash the files (e.g. after adding an engine); atomic write."""
        manifest = change(self.manifest)
        manifest = manifest.model_copy(
            update={"files": {n: sha256_file(self.root / n) for n in _bundle_files(self.root)}}
        )
        _check_declared_files(self.root, manifest)
        _write_manifest(self.root, manifest)
        self.manifest = manifest
        return manifest


def read_manifest(root: Path) -> Manifest:
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(
            f"{root} is not a bundle: it has no {MANIFEST_NAME}",
            hint="point to a directory or .tar written by biovita-export",
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(
            f"{path} is not valid JSON: {err}", hint="the manifest is damaged; re-export"
        ) from err
    if not isinstance(raw, dict):
        raise BundleError(f"{path} is not a manifest object", hint="re-export the bundle")
    version = raw.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        raise SchemaVersionError(
            f"bundle {root} has manifest schema version {version!r}; this biovita-field reads "
            f"versions {', '.join(map(str, READABLE_SCHEMA_VERSIONS))}",
            hint="install the biovita-field release that made the bundle, or re-export it",
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as err:
        raise BundleError(
            f"{path} does not follow the bundle manifest schema: {err}",
            hint="the manifest was edited or damaged; re-export the bundle",
        ) from err


def _extract_tar(tar_path: Path) -> Path:
    """Extract next to the tar into a directory keyed by the tar's hash (re-used if present)."""
    digest = sha256_file(tar_path)[:16]
    target = tar_path.with_name(f".{tar_path.name}.{digest}")
    if (target / MANIFEST_NAME).is_file():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=f".{tar_path.name}.extract-", dir=tar_path.parent))
    try:
        with tarfile.open(tar_path) as tar:
            tar.extractall(tmp, filter="data")  # refuses absolute paths, .. and device files
    except (tarfile.TarError, OSError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BundleError(
            f"cannot unpack bundle {tar_path}: {err}", hint="the .tar is damaged; copy it again"
        ) from err
    try:
        os.replace(tmp, target)
    except OSError:  # another process extracted it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Open a bundle directory or .tar; verify schema, hashes and the species bank."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"bundle {path} does not exist", hint="check the --bundle path")
    root = _extract_tar(path) if path.is_file() else path
    bundle = Bundle(root, read_manifest(root))
    if verify:
        bundle.verify_hashes()
        _ = bundle.bank
    return bundle
