"""A tiny BioVITA release in the released layout (risashinoda/BioVITA), written by the tests.

open_clip_config.json + open_clip weights for the image/text towers; clap_weights.pth =
{"clap_audio": <transformers ClapModel state dict>, "audio_adapter": {"weight": [D, P]}}. The
CLAP config is saved beside (not in) the release, as the real release carries none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import ClapAudioConfig, ClapConfig, ClapModel, ClapTextConfig

from trainer.models.encoders import ImageText, save_image_text_dir, tiny_image_text
from trainer.release import CLAP_WEIGHTS

EMBED_DIM, PROJECTION = 24, 16


def tiny_clap() -> ClapModel:
    # spec_size 256 with 64 mels: HTS-AT's 1024-frame image holds CLAP's 1001 frames, as in
    # clap-htsat-unfused; two small stages keep it fast
    audio = ClapAudioConfig(
        spec_size=256, num_mel_bins=64, window_size=4, patch_size=16, patch_stride=(16, 16),
        patch_embeds_hidden_size=16, hidden_size=32, depths=[1, 1], num_attention_heads=[1, 1],
        projection_dim=PROJECTION, hidden_dropout_prob=0.0,
    )  # fmt: skip
    text = ClapTextConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        vocab_size=100, projection_dim=PROJECTION,
    )  # fmt: skip
    config = ClapConfig(
        text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=PROJECTION
    )
    return ClapModel(config).eval()


@dataclass(frozen=True)
class TinyRelease:
    root: Path  # the release folder
    config: Path  # the CLAP config directory (--clap-config)
    clap: ClapModel
    adapter: torch.Tensor
    image_text: ImageText


def write_tiny_release(directory: Path, seed: int = 0) -> TinyRelease:
    torch.manual_seed(seed)
    root, config_dir = directory / "release", directory / "clap-config"
    image_text = tiny_image_text(embed_dim=EMBED_DIM, image_size=32, width=32, layers=2)
    save_image_text_dir(image_text, root)
    clap = tiny_clap()
    adapter = torch.randn(EMBED_DIM, PROJECTION)
    weights = {"clap_audio": clap.state_dict(), "audio_adapter": {"weight": adapter}}
    torch.save(weights, root / CLAP_WEIGHTS)
    clap.config.save_pretrained(config_dir)  # the architecture the weights belong to
    return TinyRelease(root, config_dir, clap, adapter, image_text)
