"""The three towers: image and text from open_clip (BioCLIP 2), audio from CLAP's HTS-AT.

Real backbones load through their own libraries, by hub id or local directory:

- image/text: ``load_image_text("hf-hub:imageomics/bioclip-2")`` or a directory holding
  ``open_clip_config.json`` + weights (what ``save_image_text_dir`` writes);
- audio: ``load_clap_audio("laion/clap-htsat-unfused")`` or a ``save_pretrained`` directory.

Tiny configs of the same classes (``tiny_image_text_config``, ``tiny_clap_audio_config``) are what
the synthetic world and the tests train from scratch; they go through the very same classes and
loading code. Nothing here downloads unless it is given a hub id.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.model import CLIP, CustomTextCLIP
from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict
from torch import nn
from transformers import ClapAudioConfig, ClapAudioModelWithProjection

from biovita.errors import ConfigError
from biovita.frontend import ClapFrontendSpec, FrontendSpec, frontend_spec
from trainer.images import to_pil
from trainer.models.frontend import frontend_module

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"


# ---------------------------------------------------------------------------------------------
# Image and text towers (open_clip)


def tiny_image_text_config(
    embed_dim: int = 128, image_size: int = 32, width: int = 128, layers: int = 3
) -> dict[str, Any]:
    """An open_clip ``model_cfg`` for a ViT + text transformer small enough to train on a CPU.

    The text side keeps CLIP's BPE vocabulary so the stock offline tokenizer works; the context is
    short because species prompts are (the longest taxonomy prompt is about 25 tokens).
    """
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {
            "image_size": image_size,
            "patch_size": max(4, image_size // 4),  # 16 patches: the cost is per token
            "width": width,
            "layers": layers,
            "head_width": 32,
        },
        "text_cfg": {
            "context_length": 32,
            "vocab_size": 49408,
            "width": width,
            "heads": max(1, width // 32),
            "layers": max(1, layers - 1),
        },
    }


def _world_preprocess_cfg(image_size: int) -> dict[str, Any]:
    # Synthetic images are already square and small: resize only, and normalise around 0.5.
    return {
        "size": image_size,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.25, 0.25, 0.25),
        "interpolation": "bilinear",
        "resize_mode": "squash",
    }


@dataclass
class ImageText:
    """An open_clip model with the config it was built from and its image preprocessing."""

    model: CLIP | CustomTextCLIP
    model_cfg: dict[str, Any]
    preprocess_cfg: dict[str, Any]
    source: str = "scratch"

    def __post_init__(self) -> None:
        text_cfg = self.model_cfg.get("text_cfg", {})
        if text_cfg.get("hf_tokenizer_name"):
            self.tokenizer = open_clip.tokenizer.HFTokenizer(
                text_cfg["hf_tokenizer_name"], context_length=text_cfg.get("context_length", 77)
            )
        else:
            self.tokenizer = open_clip.tokenizer.SimpleTokenizer(
                context_length=text_cfg.get("context_length", 77)
            )
        cfg = PreprocessCfg(**self.preprocess_cfg)
        self.train_transform = image_transform_v2(cfg, is_train=True)
        self.eval_transform = image_transform_v2(cfg, is_train=False)

    @property
    def embed_dim(self) -> int:
        return int(self.model_cfg["embed_dim"])

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts)

    def image_tensor(self, images: list, train: bool = False) -> torch.Tensor:
        """PIL images, uint8 ``[H, W, 3]`` arrays or paths -> a normalised ``[N, 3, S, S]`` batch."""
        transform = self.train_transform if train else self.eval_transform
        return torch.stack([transform(to_pil(image)) for image in images])

    def config_dict(self) -> dict[str, Any]:
        return {
            "model_cfg": copy.deepcopy(self.model_cfg),
            "preprocess_cfg": dict(self.preprocess_cfg),
            "source": self.source,
        }


def build_image_text(
    model_cfg: dict[str, Any], preprocess_cfg: dict[str, Any] | None = None, source: str = "scratch"
) -> ImageText:
    """A randomly initialised open_clip model of ``model_cfg``, chosen as open_clip's factory does."""
    cfg = copy.deepcopy(model_cfg)
    custom_text = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
    if "multimodal_cfg" in cfg:
        raise ConfigError("CoCa models are not supported", hint="use a CLIP-style image-text model")
    model = (CustomTextCLIP if custom_text else CLIP)(**cfg)
    image_size = cfg["vision_cfg"].get("image_size", 224)
    preprocess = merge_preprocess_dict(
        {**PreprocessCfg().__dict__, "size": image_size}, preprocess_cfg or {}
    )
    return ImageText(model, copy.deepcopy(model_cfg), dict(preprocess), source)


def tiny_image_text(embed_dim: int = 128, image_size: int = 32, **sizes) -> ImageText:
    cfg = tiny_image_text_config(embed_dim, image_size, **sizes)
    return build_image_text(cfg, _world_preprocess_cfg(image_size), source="tiny")


def load_image_text(source: str | Path) -> ImageText:
    """An open_clip model by hub id (``hf-hub:org/name``), local directory, or built-in name."""
    source = str(source)
    name = f"local-dir:{source}" if Path(source).is_dir() else source
    try:
        model, _, _ = open_clip.create_model_and_transforms(name)
        model_cfg = open_clip.get_model_config(name)
    except Exception as err:  # open_clip raises RuntimeError/OSError/ValueError/hub errors
        raise ConfigError(
            f"cannot load the image-text model {source!r}: {err}",
            hint="pass an open_clip directory (open_clip_config.json + weights) or a hub id; "
            "without network the hub model must already be in the local cache",
        ) from err
    if model_cfg is None:
        raise ConfigError(f"no open_clip config for {source!r}", hint="check the model name")
    preprocess_cfg = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
    return ImageText(model, model_cfg, preprocess_cfg, source=source)


def save_image_text_dir(image_text: ImageText, directory: str | Path) -> Path:
    """Write an open_clip model directory that ``load_image_text`` (and open_clip) read back."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    preprocess = {
        k: list(v) if isinstance(v, tuple) else v for k, v in image_text.preprocess_cfg.items()
    }
    config = {"model_cfg": image_text.model_cfg, "preprocess_cfg": preprocess}
    (directory / OPEN_CLIP_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")
    state = {k: v.contiguous() for k, v in image_text.model.state_dict().items()}
    save_file(state, directory / OPEN_CLIP_WEIGHTS)
    return directory


# ---------------------------------------------------------------------------------------------
# Audio tower (CLAP's HTS-AT) and its adapter into the image/text space


def tiny_clap_audio_config(
    n_mels: int = 64,
    hidden: int = 32,
    depths: tuple[int, ...] = (1, 1, 4),
    projection_dim: int = 256,
    patch: int = 8,
) -> ClapAudioConfig:
    """An HTS-AT small enough for a CPU: a 128x128 spectrogram image, window-4 attention.

    ``spec_size // num_mel_bins`` is HTS-AT's frequency-fold ratio, so 64 mels and spec size 128
    fold 256 time frames into two 64-bin bands. Most parameters sit in the last stage, where a
    4x4 grid makes them cheap to run. That grid must not be smaller than the attention window,
    or the relative position bias does not fit.
    """
    spec_size, window = 2 * n_mels, 4
    last_grid = spec_size // patch // 2 ** (len(depths) - 1)
    if last_grid < window:
        raise ConfigError(
            f"HTS-AT's last stage would be {last_grid}x{last_grid}, below its {window}x{window} window",
            hint="use fewer stages (depths) or a smaller patch",
        )
    heads = tuple(max(1, hidden * 2**i // 32) for i in range(len(depths)))
    return ClapAudioConfig(
        spec_size=spec_size,
        num_mel_bins=n_mels,
        window_size=window,
        patch_size=patch,
        patch_stride=(patch, patch),
        patch_embeds_hidden_size=hidden,
        hidden_size=hidden * 2 ** (len(depths) - 1),
        depths=list(depths),
        num_attention_heads=list(heads),
        projection_dim=projection_dim,
        hidden_dropout_prob=0.0,
    )


def load_clap_audio(source: str | Path) -> ClapAudioModelWithProjection:
    """HTS-AT + CLAP projection by hub id (``laion/clap-htsat-unfused``) or local directory.

    A full CLAP checkpoint works too: transformers takes its ``audio_config`` and audio weights.
    """
    try:
        return ClapAudioModelWithProjection.from_pretrained(str(source))
    except Exception as err:  # transformers raises OSError/ValueError/hub errors
        raise ConfigError(
            f"cannot load the CLAP audio model {str(source)!r}: {err}",
            hint="pass a directory written by save_pretrained or a hub id; without network the "
            "hub model must already be in the local cache (HF_HUB_OFFLINE=1 reads only the cache)",
        ) from err


class AudioTeacher(nn.Module):
    """Raw PCM ``[B, samples]`` -> unit-norm ``[B, embed_dim]`` in the image/text space.

    The tower computes its own front-end (``frontend``), laid out as HTS-AT's
    ``[B, 1, frames, mels]``; HTS-AT resizes time to its spectrogram image itself. A pretrained
    CLAP hears the ``clap`` front-end, exactly the ``ClapFeatureExtractor`` features it was
    trained on (10 s at 48 kHz, repeat-padded before the tower); the synthetic world's tiny HTS-AT
    hears the biovita front-end. With ``repeat_to_frames`` short biovita windows are tiled first,
    as CLAP's own "repeatpad" does. A bias-free linear adapter maps the CLAP projection into the
    image/text space (BioVITA).
    """

    def __init__(
        self,
        clap: ClapAudioModelWithProjection,
        embed_dim: int,
        frontend: FrontendSpec | ClapFrontendSpec,
        repeat_to_frames: int | None = None,
    ) -> None:
        super().__init__()
        self.clap = clap
        self.frontend = frontend
        self.logmel = frontend_module(frontend)
        self.repeat_to_frames = repeat_to_frames
        self.adapter = nn.Linear(clap.config.projection_dim, embed_dim, bias=False)

    @property
    def embed_dim(self) -> int:
        return self.adapter.out_features

    def features(self, pcm: torch.Tensor) -> torch.Tensor:
        mel = self.logmel(pcm)  # [B, mels, frames]
        n_mels = self.clap.config.num_mel_bins
        if mel.shape[1] != n_mels:
            mel = nn.functional.interpolate(mel.transpose(1, 2), size=n_mels, mode="linear")
            mel = mel.transpose(1, 2)
        if self.repeat_to_frames and mel.shape[2] < self.repeat_to_frames:
            reps = math.ceil(self.repeat_to_frames / mel.shape[2])
            mel = mel.repeat(1, 1, reps)[:, :, : self.repeat_to_frames]
        return mel.transpose(1, 2).unsqueeze(1)  # [B, 1, frames, mels]

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        projected = self.clap(input_features=self.features(pcm)).audio_embeds
        return nn.functional.normalize(self.adapter(projected), dim=-1)

    def config_dict(self) -> dict[str, Any]:
        return {
            "kind": "clap",
            "clap_config": self.clap.config.to_dict(),
            "embed_dim": self.embed_dim,
            "frontend": self.frontend.model_dump(),
            "repeat_to_frames": self.repeat_to_frames,
        }

    @classmethod
    def from_config_dict(cls, config: dict[str, Any]) -> AudioTeacher:
        clap_cfg = dict(config["clap_config"])
        for key in ("model_type", "transformers_version", "architectures"):
            clap_cfg.pop(key, None)
        clap = ClapAudioModelWithProjection(ClapAudioConfig(**clap_cfg))
        return cls(
            clap,
            config["embed_dim"],
            frontend_spec(config.get("frontend")),
            config.get("repeat_to_frames"),
        )


class CnnAudioTeacher(nn.Module):
    """A wide compact CNN + the same bias-free adapter: a teacher that trains from scratch fast.

    A from-scratch HTS-AT needs far more steps than a 2-core CPU allows before its mean-pooled
    tokens pick out a short call from 3 s of background; a CNN with max pooling learns it in a
    few hundred. The real recipe keeps the pretrained HTS-AT; this backbone is for synthetic-world
    runs under a CPU budget (``model.audio = "tiny-cnn"``), and distillation treats it alike.
    """

    def __init__(self, backbone: nn.Module, embed_dim: int) -> None:
        super().__init__()
        self.backbone = backbone  # a trainer.models.compact.CompactAudioTower
        self.frontend = backbone.config.frontend
        self.adapter = nn.Linear(backbone.config.embed_dim, embed_dim, bias=False)

    @property
    def embed_dim(self) -> int:
        return self.adapter.out_features

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.adapter(self.backbone.embed_unnormalised(pcm)), dim=-1)

    def config_dict(self) -> dict[str, Any]:
        return {
            "kind": "compact",
            "backbone": self.backbone.config.to_dict(),
            "embed_dim": self.embed_dim,
        }

    @classmethod
    def from_config_dict(cls, config: dict[str, Any]) -> CnnAudioTeacher:
        from trainer.models.compact import CompactAudioTower, CompactConfig

        backbone = CompactAudioTower(CompactConfig.from_dict(config["backbone"]))
        return cls(backbone, config["embed_dim"])


def audio_tower_from_config(config: dict[str, Any]) -> AudioTeacher | CnnAudioTeacher:
    """Rebuild (untrained) whichever audio tower a checkpoint's config describes."""
    if config.get("kind", "clap") == "compact":
        return CnnAudioTeacher.from_config_dict(config)
    return AudioTeacher.from_config_dict(config)
