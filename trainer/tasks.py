"""The stages as tasks for ``trainer.loop.train``: each returns its named losses per batch.

- ``Stage0Task``: CLIP-style image-text pre-training (the synthetic world's BioCLIP 2).
- ``VitaTask``: Stage 1 (ATC only; image and text towers frozen) and Stage 2 (ATC + ramped AIC
  and ITC; text tower at a small learning rate; image tower frozen; the ATC guard).
- ``DistillTask``: the compact student reproducing the frozen Stage 2 audio tower.

Frozen towers are run once up front and their embeddings cached: the image tower never changes
after Stage 0, nor the text tower in Stage 1, nor the teacher during distillation. The caches are
computed on the towers' device (the stage moves them to the training device first), each rank
embedding one share (``trainer.distributed.map_rows``), and kept as non-persistent buffers, which
the loop keeps out of DDP's per-forward broadcast.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainer.data import Batch, EpochSampler, SpeciesData
from trainer.distributed import map_rows
from trainer.losses import contrastive, cosine_distill, mse_distill, text_anchor
from trainer.models.compact import CompactAudioTower
from trainer.models.vita import VitaModel
from trainer.schedule import RampGuard


def _freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


@torch.no_grad()
def embed_images(vita: VitaModel, data: SpeciesData, batch_size: int = 256) -> torch.Tensor:
    """Every image of ``data`` through the (frozen) image tower: ``[N, D]`` unit rows."""
    vita.eval()
    device = vita.clip.logit_scale.device
    if not data.images:
        return torch.zeros(0, vita.embed_dim, device=device)

    def embed(sources) -> torch.Tensor:  # paths or bytes: each rank decodes only its share
        return vita.encode_image(vita.image_text.image_tensor(list(sources)).to(device))

    return map_rows(embed, data.images, batch_size, desc="image cache")


@torch.no_grad()
def species_text_embeddings(vita: VitaModel, data: SpeciesData) -> torch.Tensor:
    """Per species, the mean of its prompt-template embeddings, re-normalised: ``[C, D]``."""
    vita.eval()

    def embed(species_prompts) -> torch.Tensor:
        return torch.stack([vita.encode_texts(texts).mean(dim=0) for texts in species_prompts])

    per_species = map_rows(embed, data.prompt_texts, batch_size=64, desc="species texts")
    return nn.functional.normalize(per_species, dim=-1)


class Stage0Task(nn.Module):
    name = "stage0"

    def __init__(self, vita: VitaModel, data: SpeciesData, sampler: EpochSampler) -> None:
        super().__init__()
        self.vita, self.data, self.sampler = vita, data, sampler
        _freeze(vita.atc_scale)  # no audio yet; DDP requires every trainable parameter to be used
        _freeze(vita.aic_scale)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        return [{"params": [p for p in self.vita.clip.parameters() if p.requires_grad], "lr": lr}]

    def forward(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        device = self.vita.clip.logit_scale.device
        pixels = self.vita.image_text.image_tensor(
            [self.data.image(int(i)) for i in batch.images], train=True
        )
        images = self.vita.encode_image(pixels.to(device))
        texts = self.vita.encode_texts(batch.prompts)
        itc = contrastive(images, texts, self.vita.itc_scale(), batch.species.to(device))
        return {"loss": itc, "loss_itc": itc}

    def after_step(self, step: int, losses: dict[str, float]) -> dict[str, float]:
        return {"temperature_itc": 1.0 / self.vita.itc_scale().item()}

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass


class VitaTask(nn.Module):
    """Stage 1 when ``ramp`` is None (ATC only), else Stage 2."""

    def __init__(
        self,
        name: str,
        vita: VitaModel,
        data: SpeciesData,
        sampler: EpochSampler,
        ramp: RampGuard | None = None,
        text_lr_scale: float = 0.1,
    ) -> None:
        super().__init__()
        self.name, self.vita, self.data, self.sampler = name, vita, data, sampler
        self.ramp, self.text_lr_scale = ramp, text_lr_scale
        _freeze(vita.clip.visual)
        if ramp is None:
            _freeze(vita.clip)
            _freeze(vita.aic_scale)
        # Non-persistent buffers: they follow .to(device) but stay out of checkpoints.
        self.register_buffer("image_bank", embed_images(vita, data), persistent=False)
        unique = list(dict.fromkeys(t for texts in data.prompt_texts for t in texts))
        self.prompt_row = {t: i for i, t in enumerate(unique)}
        prompts = None if ramp else map_rows(vita.encode_texts, unique, desc="prompt cache")
        self.register_buffer("prompt_bank", prompts, persistent=False)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        groups = [{"params": [p for p in self.vita.audio.parameters()], "lr": lr}]
        groups.append({"params": [self.vita.atc_scale.log_scale], "lr": lr})
        if self.ramp is not None:
            groups.append({"params": [self.vita.aic_scale.log_scale], "lr": lr})
            text = [p for p in self.vita.clip.parameters() if p.requires_grad]
            groups.append({"params": text, "lr": lr * self.text_lr_scale})
        return groups

    def train(self, mode: bool = True) -> VitaTask:
        super().train(mode)
        self.vita.clip.visual.eval()  # frozen: its cached embeddings must stay valid
        return self

    def _texts(self, prompts: list[str]) -> torch.Tensor:
        if self.prompt_bank is None:
            return self.vita.encode_texts(prompts)
        rows = torch.tensor([self.prompt_row[p] for p in prompts])
        return self.prompt_bank[rows.to(self.prompt_bank.device)]

    def forward(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        device = self.vita.clip.logit_scale.device
        species = batch.species.to(device)
        audio = self.vita.encode_audio(batch.pcm.to(device))
        texts = self._texts(batch.prompts)
        atc = contrastive(audio, texts, self.vita.atc_scale(), species)
        if self.ramp is None:
            return {"loss": atc, "loss_atc": atc}
        weights = self.ramp.weights(step)
        # Only clips whose species has images pair with one; ranks may hold different numbers
        # (contrastive gathers them all, and with none anywhere is a zero touching its scale).
        has_image = (batch.images >= 0).to(device)
        images = self.image_bank[batch.images.to(device)[has_image]]
        aic = contrastive(audio[has_image], images, self.vita.aic_scale(), species[has_image])
        itc = contrastive(images, texts[has_image], self.vita.itc_scale(), species[has_image])
        loss = atc + weights["aic"] * aic + weights["itc"] * itc
        return {"loss": loss, "loss_atc": atc, "loss_aic": aic, "loss_itc": itc}

    def after_step(self, step: int, losses: dict[str, float]) -> dict[str, float]:
        out = {"temperature_atc": 1.0 / self.vita.atc_scale().item()}
        if self.ramp is not None:
            self.ramp.observe(step, losses["loss_atc"])
            out.update({f"weight_{k}": v for k, v in self.ramp.weights(step).items()})
        return out

    def extra_state(self) -> dict:
        return {"ramp": None if self.ramp is None else self.ramp.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        if self.ramp is not None:
            self.ramp.load_state_dict(state["ramp"])


class DistillWeights(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cosine: float = Field(1.0, ge=0, description="1 - cos(student, teacher)")
    mse: float = Field(0.0, ge=0, description="squared distance to the teacher embedding")
    text: float = Field(0.5, ge=0, description="cross-entropy against species text embeddings")


class DistillTask(nn.Module):
    name = "distill"

    def __init__(
        self,
        student: CompactAudioTower,
        teacher: VitaModel,
        data: SpeciesData,
        sampler: EpochSampler,
        weights: DistillWeights,
    ) -> None:
        super().__init__()
        self.student, self.teacher, self.data, self.sampler = student, teacher, data, sampler
        self.weights = weights
        _freeze(teacher)
        teacher.eval()
        self.register_buffer(
            "species_text", species_text_embeddings(teacher, data), persistent=False
        )
        self.text_scale = float(teacher.atc_scale())
        # A clip no longer than one window is always seen whole (rotated in time by the sampler,
        # which must not move its embedding), so its target is fixed: cache it.
        window = data.frontend.window_samples
        fits = all(len(data.pcm(i)) <= window for i in range(len(data.clips)))
        targets = self._teacher_targets() if fits else None
        self.register_buffer("targets", targets, persistent=False)

    @torch.no_grad()
    def _teacher_targets(self, batch_size: int = 64) -> torch.Tensor:
        device = self.teacher.clip.logit_scale.device

        def embed(ids: range) -> torch.Tensor:
            pcm = torch.from_numpy(np.stack([self.data.window(i) for i in ids]))
            return self.teacher.encode_audio(pcm.to(device))

        return map_rows(embed, range(len(self.data.clips)), batch_size, desc="teacher targets")

    def train(self, mode: bool = True) -> DistillTask:
        super().train(mode)
        self.teacher.eval()
        return self

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        return [{"params": list(self.student.parameters()), "lr": lr}]

    def forward(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        device = self.species_text.device
        pcm, species = batch.pcm.to(device), batch.species.to(device)
        student = self.student(pcm)
        if self.targets is not None:
            teacher = self.targets[batch.clips.to(device)]
        else:
            with torch.no_grad():
                teacher = self.teacher.encode_audio(pcm)
        cos = cosine_distill(student, teacher)
        mse = mse_distill(student, teacher)
        txt = text_anchor(student, self.species_text, species, self.text_scale)
        w = self.weights
        loss = w.cosine * cos + w.mse * mse + w.text * txt
        return {"loss": loss, "loss_cosine": cos, "loss_mse": mse, "loss_text": txt}

    def after_step(self, step: int, losses: dict[str, float]) -> dict[str, float]:
        return {}

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass
