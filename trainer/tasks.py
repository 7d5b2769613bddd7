"""The stages as tasks for ``trainer.loop.train``: each returns its named losses per batch.

- ``Stage0Task``: CLIP-style image-text pre-training (the synthetic world's BioCLIP 2).
- ``VitaTask``: Stage 1 (ATC only; image and text towers frozen), the paper's Stage 2 warm-up
  (0.8 ATC + 0.2 AIC, text frozen) and Stage 2 (ATC + ramped AIC and ITC; text tower at a small
  learning rate; image tower frozen; the ATC guard or the released code's EMA gate).
- ``DistillTask``: the compact student reproducing the frozen Stage 2 audio tower, each tower on
  its own view of the audio, on labelled clips or on streamed unlabelled recordings.

Frozen towers are run once up front and their embeddings cached: the image tower never changes
after Stage 0, nor the text tower in Stage 1, nor the teacher during distillation. The caches are
computed on the towers' device (the stage moves them to the training device first), each rank
embedding one share (``trainer.distributed.map_rows``), and kept as non-persistent buffers, which
the loop keeps out of DDP's per-forward broadcast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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
from trainer.schedule import EmaGate, RampGuard


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


class FixedWeights:
    """Constant loss weights: Stage 1 (``{"atc": 1}``) and the paper's Stage 2 warm-up."""

    def __init__(self, weights: dict[str, float]) -> None:
        self.fixed = dict(weights)

    @classmethod
    def atc_only(cls) -> FixedWeights:
        """Stage 1's weights: audio-text contrast alone."""
        return cls({"atc": 1.0})

    def weights(self, step: int) -> dict[str, float]:
        return dict(self.fixed)

    def observe(self, step: int, atc_loss: float) -> None:
        pass

    def penalty(self, atc: torch.Tensor) -> torch.Tensor | None:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class RampedWeights:
    """Stage 2: ATC at 1, AIC and ITC ramped by ``schedule``: the synthetic recipe's
    ``RampGuard``, or the released code's ``EmaGate`` (which adds its hinge on ATC)."""

    def __init__(self, schedule: RampGuard | EmaGate) -> None:
        self.schedule = schedule

    def weights(self, step: int) -> dict[str, float]:
        return {"atc": 1.0, **self.schedule.weights(step)}

    def observe(self, step: int, atc_loss: float) -> None:
        self.schedule.observe(step, atc_loss)

    def penalty(self, atc: torch.Tensor) -> torch.Tensor | None:
        if not isinstance(self.schedule, EmaGate):
            return None
        gate = self.schedule  # pulls ATC back under the gate's upper threshold
        return gate.hinge_weight * torch.relu(atc - gate.upper)

    def state_dict(self) -> dict:
        return self.schedule.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.schedule.load_state_dict(state)


def is_norm_or_bias(name: str) -> bool:
    """Parameters that get no weight decay (the released code's rule, by name)."""
    return any(part in name for part in ("bias", "norm", "ln_", "layer_norm"))


@dataclass(frozen=True)
class TrainablePlan:
    """Which parameters a VITA stage trains, at which LR and weight decay, from which step.

    LRs are fractions of the loop's LR (the adapter and the temperatures get it whole); a weight
    decay of None is the loop's. ``audio_trainable`` lists name fragments of the audio backbone's
    parameters to train (None: all of them), from step ``audio_unfreeze_step`` on (held before:
    no update, no optimiser state).
    """

    train_text: bool = False
    text_lr_scale: float = 0.1
    text_weight_decay: float | None = None
    audio_lr_scale: float = 1.0
    audio_weight_decay: float | None = None
    audio_trainable: tuple[str, ...] | None = None
    audio_unfreeze_step: int = 0
    no_decay_norm_bias: bool = False


@dataclass(frozen=True)
class TemperaturePlan:
    """``shared``: one temperature (ATC's) for ATC, AIC and ITC, as the released code has;
    ``reset_to``: set at the start (the released Phase 2: 0.2); ``learnable``: trained or fixed."""

    shared: bool = False
    reset_to: float | None = None
    learnable: bool = True


class VitaTask(nn.Module):
    """Stage 1 (ATC only, text frozen), the paper's Stage 2 warm-up (fixed ATC + AIC, text
    frozen) or Stage 2 (ATC + ramped AIC/ITC, text trained), by ``weights`` and ``plan``."""

    def __init__(
        self,
        name: str,
        vita: VitaModel,
        data: SpeciesData,
        sampler: EpochSampler,
        weights: FixedWeights | RampedWeights,
        plan: TrainablePlan = TrainablePlan(),
        temperature: TemperaturePlan = TemperaturePlan(),
    ) -> None:
        super().__init__()
        self.name, self.vita, self.data, self.sampler = name, vita, data, sampler
        self.loss_weights, self.plan, self.temperature = weights, plan, temperature
        self.uses_images = any(k != "atc" for k in weights.weights(10**9))
        for p in vita.clip.parameters():  # explicit both ways: a warm-up may have frozen them
            p.requires_grad_(plan.train_text)
        _freeze(vita.clip.visual)
        self._set_temperatures()
        self._select_audio()
        # Non-persistent buffers: they follow .to(device) but stay out of checkpoints.
        images = embed_images(vita, data) if self.uses_images else None
        self.register_buffer("image_bank", images, persistent=False)
        unique = list(dict.fromkeys(t for texts in data.prompt_texts for t in texts))
        self.prompt_row = {t: i for i, t in enumerate(unique)}
        # Frozen text: each prompt embedded once (each rank a share); trained text: every step.
        with torch.no_grad():
            trained = plan.train_text
            prompts = None if trained else map_rows(vita.encode_texts, unique, desc="prompt cache")
        self.register_buffer("prompt_bank", prompts, persistent=False)

    def _scales(self) -> list[nn.Parameter]:
        return [
            self.vita.atc_scale.log_scale,
            self.vita.aic_scale.log_scale,
            self.vita.clip.logit_scale,
        ]

    def _set_temperatures(self) -> None:
        t = self.temperature
        atc, aic, itc = self._scales()
        with torch.no_grad():
            if t.reset_to is not None:
                atc.fill_(math.log(1.0 / t.reset_to))
            if t.shared:  # the checkpoint then holds the one temperature under every name
                aic.copy_(atc)
                itc.copy_(atc)
        # A scale no loss uses must not train (DDP needs every trainable parameter used).
        for p in self._scales():
            p.requires_grad_(False)
        if t.learnable:
            atc.requires_grad_(True)
            if not t.shared and self.uses_images:
                aic.requires_grad_(True)
                itc.requires_grad_(self.plan.train_text)

    def _select_audio(self) -> None:
        fragments = self.plan.audio_trainable
        for name, p in self._backbone():
            p.requires_grad_(fragments is None or any(f in name for f in fragments))

    def _backbone(self) -> list[tuple[str, nn.Parameter]]:
        """The audio tower's parameters but its adapter's, named inside the backbone
        (``audio_model.audio_encoder...`` for CLAP, as the released code's names are)."""
        return [
            (name.partition(".")[2], p)
            for name, p in self.vita.audio.named_parameters()
            if not name.startswith("adapter.")
        ]

    def _group(self, named, lr: float, weight_decay: float | None, **extra) -> list[dict]:
        named = [(n, p) for n, p in named if p.requires_grad]
        if not self.plan.no_decay_norm_bias:
            sets = [([p for _, p in named], weight_decay)]
        else:
            decay = [p for n, p in named if not is_norm_or_bias(n)]
            sets = [(decay, weight_decay), ([p for n, p in named if is_norm_or_bias(n)], 0.0)]
        groups = []
        for params, wd in sets:
            if params:
                group = {"params": params, "lr": lr, **extra}
                if wd is not None:
                    group["weight_decay"] = wd
                groups.append(group)
        return groups

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        plan = self.plan
        groups = self._group(self.vita.audio.adapter.named_parameters(), lr, None)
        groups += self._group(
            self._backbone(),
            lr * plan.audio_lr_scale,
            plan.audio_weight_decay,
            start_step=plan.audio_unfreeze_step,
        )
        own_scales = [self.vita.atc_scale.log_scale, self.vita.aic_scale.log_scale]
        if trainable := [p for p in own_scales if p.requires_grad]:
            groups.append({"params": trainable, "lr": lr})
        if plan.train_text:  # ITC's scale is open_clip's own logit_scale: it trains with the text
            groups += self._group(
                self.vita.clip.named_parameters(), lr * plan.text_lr_scale, plan.text_weight_decay
            )
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

    def _pair_scales(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.temperature.shared:
            shared = self.vita.atc_scale()
            return shared, shared, shared
        return self.vita.atc_scale(), self.vita.aic_scale(), self.vita.itc_scale()

    def _atc(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        device = self.vita.clip.logit_scale.device
        species = batch.species.to(device)
        audio = self.vita.encode_audio(batch.pcm.to(device))
        texts = self._texts(batch.prompts)
        atc = contrastive(audio, texts, self._pair_scales()[0], species)
        return atc, audio, texts, species

    def atc_loss(self, batch: Batch) -> torch.Tensor:
        """ATC alone on ``batch`` (the EMA gate's baseline is measured with it)."""
        return self._atc(batch)[0]

    def forward(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        atc, audio, texts, species = self._atc(batch)
        device = atc.device
        _, s_aic, s_itc = self._pair_scales()
        if not self.uses_images:
            return {"loss": atc, "loss_atc": atc}
        weights = self.loss_weights.weights(step)
        # Only clips whose species has images pair with one; ranks may hold different numbers
        # (contrastive gathers them all, and with none anywhere is a zero touching its scale).
        has_image = (batch.images >= 0).to(device)
        images = self.image_bank[batch.images.to(device)[has_image]]
        aic = contrastive(audio[has_image], images, s_aic, species[has_image])
        itc = contrastive(images, texts[has_image], s_itc, species[has_image])
        loss = weights["atc"] * atc + weights.get("aic", 0.0) * aic + weights.get("itc", 0.0) * itc
        losses = {"loss_atc": atc, "loss_aic": aic, "loss_itc": itc}
        if (hinge := self.loss_weights.penalty(atc)) is not None:
            loss = loss + hinge
            losses["loss_hinge"] = hinge
        return {"loss": loss, **losses}

    def after_step(self, step: int, losses: dict[str, float]) -> dict[str, float]:
        out = {"temperature_atc": 1.0 / self.vita.atc_scale().item()}
        if self.uses_images:
            self.loss_weights.observe(step, losses["loss_atc"])
            weights = self.loss_weights.weights(step)
            out.update({f"weight_{k}": v for k, v in weights.items() if k != "atc"})
        return out

    def extra_state(self) -> dict:
        return {"weights": self.loss_weights.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.loss_weights.load_state_dict(state["weights"])


@torch.no_grad()
def measure_atc_baseline(task: VitaTask, sampler: EpochSampler, batches: int) -> float:
    """Mean ATC over ``batches`` batches in eval mode: the EMA gate's baseline (released code:
    20 training batches after the temperature reset)."""
    task.eval()
    losses = [float(task.atc_loss(sampler.next_batch())) for _ in range(batches)]
    task.train()
    finite = [v for v in losses if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else 3.0  # the released code's fallback


class DistillWeights(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cosine: float = Field(1.0, ge=0, description="1 - cos(student, teacher)")
    mse: float = Field(0.0, ge=0, description="squared distance to the teacher embedding")
    text: float = Field(0.5, ge=0, description="cross-entropy against species text embeddings")


class DistillTask(nn.Module):
    """The student reproducing the frozen teacher's embedding, each hearing its own view.

    ``data`` gives the species (taxa) of the text anchor, and, when the sampler hands both towers
    the same window (no ``teacher_pcm`` in its batches), the clips whose teacher targets are cached.
    The text anchor applies only to labelled rows (species >= 0): unlabelled recordings are
    distilled on the teacher's embedding alone.
    """

    name = "distill"

    def __init__(
        self,
        student: CompactAudioTower,
        teacher: VitaModel,
        data: SpeciesData | None,
        sampler,
        weights: DistillWeights,
    ) -> None:
        super().__init__()
        self.student, self.teacher, self.data, self.sampler = student, teacher, data, sampler
        self.weights = weights
        _freeze(teacher)
        teacher.eval()
        labelled = data is not None and bool(data.taxa)
        text = species_text_embeddings(teacher, data) if labelled else None
        self.register_buffer("species_text", text, persistent=False)
        self.text_scale = float(teacher.atc_scale())
        # A clip no longer than one window is always seen whole (rotated in time by the sampler,
        # which must not move its embedding), so its target is fixed: cache it. Only when both
        # towers hear the same window: a teacher's own view of a rotated clip is another input.
        same_view = isinstance(sampler, EpochSampler) and sampler.teacher_view is None
        fits = same_view and all(
            len(data.pcm(i)) <= data.frontend.window_samples for i in range(len(data.clips))
        )
        self.register_buffer("targets", self._teacher_targets() if fits else None, persistent=False)

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
        device = next(self.student.parameters()).device
        pcm, species = batch.pcm.to(device), batch.species.to(device)
        student = self.student(pcm)
        if self.targets is not None:
            teacher = self.targets[batch.clips.to(device)]
        else:
            heard = pcm if batch.teacher_pcm is None else batch.teacher_pcm.to(device)
            with torch.no_grad():
                teacher = self.teacher.encode_audio(heard)
        cos = cosine_distill(student, teacher)
        mse = mse_distill(student, teacher)
        labelled = species >= 0
        if self.species_text is not None and bool(labelled.any()):
            txt = text_anchor(
                student[labelled], self.species_text, species[labelled], self.text_scale
            )
        else:  # nothing labelled in this batch: no anchor (a zero that keeps the graph whole)
            txt = 0.0 * student.sum()
        w = self.weights
        loss = w.cosine * cos + w.mse * mse + w.text * txt
        return {"loss": loss, "loss_cosine": cos, "loss_mse": mse, "loss_text": txt}

    def after_step(self, step: int, losses: dict[str, float]) -> dict[str, float]:
        return {}

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass
