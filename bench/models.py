"""Where the benchmark's models come from: trainer checkpoints, exported bundles, the chain.

A ``ModelSource`` turns the items of a split into ``Features``. Checkpoints load through the
trainer's ``trainer.embed.load_embedder``. A bundle is measured the way the device runs it: its
audio goes through the bundle's ONNX tower in ONNX Runtime (the device's own backend), while the
image and text sides come from the checkpoint the bundle was exported from (the bundle carries no
image or text tower), found by the sha256 its manifest records. That makes the bundle row differ
from its checkpoint's row only by the export (graph, front-end in the graph, quantisation), which
is the thing to measure. The bundle's species bank is not a six-direction model (it averages
prompts and image prototypes into one vector per species); ``biovita-bench detection`` measures
it, through the device's own scorer.

A bundle's primary tower (what the device runs: INT8 on a CPU target) and each alternate tower
(e.g. the FP32 graph) get a row each. Embeddings are computed once per (model, split, modality):
the bundle rows reuse their checkpoint's image and text tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.features import ChainFeatures, Embedder, Features, FeatureSet, extract_features
from bench.protocol import MODALITIES, BenchmarkIndex
from biovita.bundle import Bundle, TowerSpec, load_bundle, sha256_file
from biovita.errors import BiovitaError, BundleError
from biovita.frontend import FrontendSpec


@dataclass
class ModelSource:
    name: str
    featurize: Callable[[BenchmarkIndex], Features]
    kind: str = "model"  # model | bundle | baseline
    reference: str | None = None  # for a bundle: the checkpoint row it must agree with


def load_embedder(path: str | Path) -> Embedder:
    """The trainer's embedder for any stage checkpoint (imported here: it needs PyTorch)."""
    try:
        from trainer.embed import load_embedder as trainer_load_embedder
    except ImportError as err:
        raise BiovitaError(
            f"cannot load checkpoints: {err}",
            hint="install the training extra (pip install -e '.[train]')",
        ) from err
    return trainer_load_embedder(path)


class OnnxAudio:
    """One ONNX tower of a bundle, run by the device's ONNX Runtime backend (audio only)."""

    def __init__(self, bundle: Bundle, tower: TowerSpec) -> None:
        from device.backends import OnnxRuntimeBackend

        self.backend = OnnxRuntimeBackend(
            Bundle(bundle.root, bundle.manifest.model_copy(update={"tower": tower}))
        )
        self.name = f"{bundle.root.name} {tower.precision}"
        self.dim = tower.embedding_dim
        self.frontend: FrontendSpec = bundle.manifest.frontend

    def audio(self, pcm: np.ndarray) -> np.ndarray:
        return self.backend.embed(pcm)

    def images(self, images: Sequence) -> np.ndarray:
        raise BundleError("a bundle has no image tower", hint="images come from its checkpoint")

    def texts(self, texts: list[str]) -> np.ndarray:
        raise BundleError("a bundle has no text tower", hint="texts come from its checkpoint")


def bundle_checkpoint(bundle_path: str | Path, candidates: Sequence[str | Path]) -> Path:
    """The checkpoint among ``candidates`` whose sha256 the bundle's provenance records."""
    wanted = load_bundle(bundle_path, verify=False).manifest.provenance.checkpoint_sha256
    for path in candidates:
        if wanted and Path(path).is_file() and sha256_file(path) == wanted:
            return Path(path)
    raise BundleError(
        f"none of the checkpoints given is the one bundle {bundle_path} was exported from "
        f"(sha256 {wanted[:12] or 'not recorded'})",
        hint="pass it with --checkpoint, or name it with --bundle-checkpoint",
    )


class ModelRegistry:
    """Loads each checkpoint once and embeds each (model, split, modality) once."""

    def __init__(self, crop: str | None = None) -> None:
        self.crop = crop  # "onset10": audio cut as the official evaluation does
        self._embedders: dict[Path, Embedder] = {}
        self._tables: dict[tuple[int, int, str], object] = {}

    def embedder(self, path: str | Path) -> Embedder:
        key = Path(path).resolve()
        if key not in self._embedders:
            self._embedders[key] = load_embedder(path)
        return self._embedders[key]

    def features(
        self, embedder: Embedder, index: BenchmarkIndex, modalities: Sequence[str], name: str
    ) -> FeatureSet:
        out = FeatureSet(name)
        for modality in modalities:
            key = (id(embedder), id(index), modality)
            if key not in self._tables:
                part = extract_features(embedder, index, (modality,), name, self.crop)
                table = part.text if modality == "text" else getattr(part, modality)
                self._tables[key] = (table, part.unreadable.get(modality, []))
            table, unreadable = self._tables[key]
            setattr(out, modality, table)
            if unreadable:
                out.unreadable[modality] = unreadable
        return out

    def checkpoint(self, path: str | Path, name: str) -> ModelSource:
        embedder = self.embedder(path)
        return ModelSource(name, lambda index: self.features(embedder, index, MODALITIES, name))

    def chain(
        self, stage1: str | Path, stage0: str | Path, name: str = "zero-shot chain"
    ) -> ModelSource:
        audio_text, image_text = self.embedder(stage1), self.embedder(stage0)

        def featurize(index: BenchmarkIndex) -> Features:
            return ChainFeatures(
                name,
                self.features(audio_text, index, ("audio", "text"), f"{name} (stage 1)"),
                self.features(image_text, index, ("image", "text"), f"{name} (image-text)"),
            )

        return ModelSource(name, featurize, kind="baseline")

    def bundle(
        self, bundle_path: str | Path, checkpoint: str | Path, reference: str | None
    ) -> list[ModelSource]:
        """One row per tower of the bundle (primary first), image/text from ``checkpoint``."""
        bundle = load_bundle(bundle_path)
        source = self.embedder(checkpoint)
        if source.dim != bundle.manifest.tower.embedding_dim:
            raise BundleError(
                f"bundle {bundle_path} embeds in {bundle.manifest.tower.embedding_dim} dims but "
                f"checkpoint {checkpoint} in {source.dim}",
                hint="pass the checkpoint the bundle was exported from (--bundle-checkpoint)",
            )
        rows = []
        for tower in [bundle.manifest.tower, *bundle.manifest.alternates]:
            audio = OnnxAudio(bundle, tower)
            name = f"{Path(bundle_path).name} {tower.precision} (ONNX Runtime)"

            def featurize(index: BenchmarkIndex, audio=audio, name=name) -> Features:
                features = self.features(source, index, ("image", "text"), name)
                own = self.features(audio, index, ("audio",), name)
                features.audio = own.audio
                features.unreadable.update(own.unreadable)
                return features

            rows.append(ModelSource(name, featurize, "bundle", reference))
        return rows
