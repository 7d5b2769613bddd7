"""Import the released BioVITA model (``risashinoda/BioVITA``) as a teacher checkpoint.

The release is a Hugging Face model repository in this layout, the one dahlian00/BioVITA's
``eval/extract_features.py`` reads::

    open_clip_config.json + open_clip weights   the image/text towers (open_clip hub layout)
    clap_weights.pth                            {"clap_audio": <transformers ClapModel state
                                                 dict>, "audio_adapter": {"weight": [D, P]}}

``clap_audio`` holds a whole ClapModel (audio and text halves); the audio tower keeps its
``audio_model.*`` and ``audio_projection.*`` tensors and drops the text side. The release carries
no CLAP architecture config: the official reader builds ``laion/clap-htsat-unfused`` and loads
the weights into it, and so does this importer (``ClapAudioConfig()`` is that architecture);
``clap_config`` names another (a transformers config directory or hub id). The audio tower hears
the CLAP front-end, the features those weights were trained on. The result is a ``VitaModel``,
saved as ``RUN/stage2.pt``: the checkpoint ``distill``, ``bank`` and ``embed`` read.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import ClapAudioConfig, ClapAudioModelWithProjection

from biovita.errors import ConfigError
from biovita.frontend import ClapFrontendSpec
from trainer.checkpoint import CheckpointError
from trainer.models.encoders import OPEN_CLIP_CONFIG, AudioTeacher, load_image_text
from trainer.models.vita import VitaModel

CLAP_WEIGHTS = "clap_weights.pth"
AUDIO_PREFIXES = ("audio_model.", "audio_projection.")
RELEASE_FILES = [OPEN_CLIP_CONFIG, "*.safetensors", "*.bin", CLAP_WEIGHTS]


class ReleaseError(CheckpointError):
    """A release folder or weights file that is not in the BioVITA layout."""


def release_dir(source: str | Path) -> Path:
    """A local snapshot folder as it is; a hub id (``org/name`` or ``hf-hub:org/name``) fetched
    through huggingface_hub (from its cache when offline)."""
    path = Path(source)
    if path.is_dir():
        return path
    repo_id = str(source).removeprefix("hf-hub:")
    if repo_id.count("/") != 1 or path.exists():
        raise ConfigError(
            f"{source!r} is neither a release folder nor a hub id",
            hint="pass a local snapshot of risashinoda/BioVITA or the hub id itself",
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=RELEASE_FILES))
    except Exception as err:  # hub errors, offline mode, network errors
        raise ConfigError(
            f"cannot download the release {repo_id!r}: {err}",
            hint="without network, download the repository elsewhere (huggingface-cli download "
            f"{repo_id} --local-dir DIR) and pass --release DIR",
        ) from err


def _clap_audio_config(source: str | Path | None) -> ClapAudioConfig:
    if source is None:
        return ClapAudioConfig()
    try:
        # a full ClapConfig (config.json of a ClapModel) yields its audio_config
        return ClapAudioConfig.from_pretrained(str(source))
    except Exception as err:  # transformers raises OSError/ValueError/hub errors
        raise ConfigError(
            f"cannot read a CLAP config from {str(source)!r}: {err}",
            hint="pass a transformers CLAP model directory (config.json) or hub id",
        ) from err


def read_clap_weights(path: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``(clap_audio state dict, adapter weight)`` from ``clap_weights.pth``, checked."""
    if not path.is_file():
        raise ReleaseError(
            f"{path} does not exist: the release has no {CLAP_WEIGHTS}",
            hint="pass the folder of the whole risashinoda/BioVITA snapshot",
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise ReleaseError(
            f"cannot read {path}: {err}", hint="the file is damaged; download it again"
        ) from err
    missing = [k for k in ("clap_audio", "audio_adapter") if not isinstance(payload, dict)
               or not isinstance(payload.get(k), dict)]  # fmt: skip
    if missing:
        raise ReleaseError(
            f"{path} lacks {' and '.join(missing)}: it is not BioVITA's {CLAP_WEIGHTS}",
            hint='expected {"clap_audio": <ClapModel state dict>, "audio_adapter": {"weight": ...}}',
        )
    adapter = payload["audio_adapter"].get("weight")
    if not isinstance(adapter, torch.Tensor) or adapter.ndim != 2:
        raise ReleaseError(
            f"{path}: audio_adapter.weight is missing or not a matrix",
            hint="expected a [embed_dim, clap_projection_dim] tensor, e.g. [768, 512]",
        )
    return payload["clap_audio"], adapter


def clap_audio_tower(state: dict[str, torch.Tensor], config: ClapAudioConfig):
    """The ClapAudioModelWithProjection of ``config`` holding the audio keys of ``state``."""
    clap = ClapAudioModelWithProjection(config)
    expected = clap.state_dict()
    audio = {k: v for k, v in state.items() if k.startswith(AUDIO_PREFIXES)}
    missing = sorted(set(expected) - set(audio))
    shapes = [
        f"{k} {tuple(v.shape)} (model: {tuple(expected[k].shape)})"
        for k, v in audio.items()
        if k in expected and v.shape != expected[k].shape
    ]
    unexpected = sorted(set(audio) - set(expected))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {', '.join(missing[:5])}")
    if shapes:
        problems.append(f"{len(shapes)} mis-shaped: {', '.join(shapes[:5])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {', '.join(unexpected[:5])}")
    if problems:
        raise ReleaseError(
            "clap_audio does not fit the CLAP audio architecture: " + "; ".join(problems),
            hint="the weights are of another CLAP; name its config with --clap-config "
            "(default: laion/clap-htsat-unfused's architecture)",
        )
    clap.load_state_dict(audio)
    return clap


def import_biovita(
    source: str | Path, clap_config: str | Path | None = None
) -> tuple[VitaModel, dict]:
    """The release as a teacher ``VitaModel`` (eval mode) and the provenance for its meta."""
    root = release_dir(source)
    if not (root / OPEN_CLIP_CONFIG).is_file():
        raise ReleaseError(
            f"{root} has no {OPEN_CLIP_CONFIG}: not an open_clip release folder",
            hint="pass the folder of the whole risashinoda/BioVITA snapshot",
        )
    state, adapter = read_clap_weights(root / CLAP_WEIGHTS)
    clap = clap_audio_tower(state, _clap_audio_config(clap_config))
    image_text = load_image_text(root)
    expected = (image_text.embed_dim, clap.config.projection_dim)
    if tuple(adapter.shape) != expected:
        raise ReleaseError(
            f"audio_adapter.weight is {list(adapter.shape)}, expected {list(expected)} "
            "(image/text space x CLAP projection)",
            hint="the adapter belongs to another model; check the release and --clap-config",
        )
    teacher = AudioTeacher(clap, image_text.embed_dim, ClapFrontendSpec())
    with torch.no_grad():
        teacher.adapter.weight.copy_(adapter)
    dropped = sorted(k for k in state if not k.startswith(AUDIO_PREFIXES))
    meta = {
        "stage": "import-biovita",
        "release": str(source),
        "clap_config": str(clap_config or "laion/clap-htsat-unfused (ClapAudioConfig())"),
        "dropped_clap_keys": len(dropped),
    }
    return VitaModel(image_text, teacher).eval(), meta
