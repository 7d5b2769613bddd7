"""The training loop every stage shares.

A stage is a ``Task``: an ``nn.Module`` whose ``forward(batch, step)`` returns a dict of named
losses (``loss_<term>``) with the weighted total under ``"loss"``, plus a sampler and its parameter groups
(a group may carry ``start_step``: it trains from that step on). The loop owns
everything else: AdamW, cosine LR with warm-up, gradient accumulation, AMP on CUDA, DDP,
progress, metrics, and checkpoint + resume (a killed run resumes at the same step and draws the
same data and dropout, so it ends with the same weights as an uninterrupted run).

A step whose inputs, losses or gradients are not finite (on any rank) changes nothing: no
optimiser update, and the normalisation statistics (BatchNorm running mean and variance) its
forward pass moved are put back, so one bad window cannot poison the tower for every later input.
Every rank takes that decision on the same all-reduced numbers, so they stay in step.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from trainer.checkpoint import read_checkpoint, save_checkpoint
from trainer.data import Batch, EpochCursor
from trainer.distributed import DistContext
from trainer.metrics import MetricsLog
from trainer.schedule import cosine_with_warmup

log = logging.getLogger(__name__)

STATE_KIND = "train-state"


class LoopConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(300, ge=1)
    epochs: float | None = Field(
        None, gt=0, description="when set, steps = this many epochs of the sampler (trainer.stages)"
    )
    batch_size: int = Field(64, ge=1, description="per process and per micro-batch")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimiser step")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_steps: int = Field(20, ge=0)
    lr_floor: float = Field(0.02, ge=0, le=1, description="final LR as a fraction of the peak")
    clip_grad_norm: float = Field(1.0, ge=0, description="0: no clipping")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW's (beta1, beta2)")
    per_species: int = Field(20, ge=1, description="clips (or images) per species per epoch")
    min_per_species: int = Field(
        5, ge=1, description="a species with fewer items is oversampled to this many per epoch"
    )
    loader_workers: int = Field(
        0, ge=0, description="DataLoader processes decoding batches (0: in the training process)"
    )
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(100, ge=1)
    amp: Literal["auto", "off", "fp16", "bf16"] = Field(
        "auto",
        description="autocast dtype; auto: fp16 (with a gradient scaler) on CUDA, off on CPU",
    )
    seed: int = 0


class Task(Protocol):
    name: str
    sampler: EpochCursor

    def param_groups(self, lr: float) -> list[dict[str, Any]]: ...

    def forward(self, batch: Batch, step: int) -> dict[str, torch.Tensor]: ...

    def after_step(self, step: int, losses: dict[str, float]) -> dict[str, float]: ...

    def extra_state(self) -> dict: ...

    def load_extra_state(self, state: dict) -> None: ...


@dataclass
class LoopResult:
    step: int
    last: dict[str, float]
    seconds: float
    resumed_from: int


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The dtype ``LoopConfig.amp`` asks for on ``device``; None means full precision."""
    if amp == "auto":
        return torch.float16 if device.type == "cuda" else None
    return {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}[amp]


def _persistent_buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    """The buffers a checkpoint keeps (BatchNorm statistics among them), by name."""
    saved = module.state_dict(keep_vars=True)
    return {name: b for name, b in module.named_buffers() if name in saved}


def _finite(batch: Batch) -> bool:
    return batch.pcm is None or bool(torch.isfinite(batch.pcm).all())


def train(
    task: nn.Module,
    config: LoopConfig,
    state_path: str | Path,
    metrics_path: str | Path,
    dist: DistContext | None = None,
    stop_after: int | None = None,
) -> LoopResult:
    """Run ``task`` to ``config.steps`` optimiser steps, resuming from ``state_path`` if present.

    ``stop_after`` ends the run after that many steps (as a kill would, but cleanly): tests use it.
    """
    dist = dist or DistContext()
    state_path = Path(state_path)
    task.to(dist.device)
    precision = autocast_dtype(config.amp, dist.device)
    if dist.enabled:
        # Non-persistent buffers are constants and caches every rank computes itself (the DFT
        # kernels, a task's image bank): DDP must not re-broadcast them on every forward.
        rank_local = sorted(set(dict(task.named_buffers())) - set(task.state_dict()))
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(task, rank_local)
    model = DistributedDataParallel(task) if dist.enabled else task
    optimizer = torch.optim.AdamW(
        task.param_groups(config.lr), weight_decay=config.weight_decay, betas=config.betas
    )
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    # fp16 needs loss scaling for its small gradients; bf16 has float32's range and does not.
    scaling = precision == torch.float16 and dist.device.type == "cuda"
    scaler = torch.amp.GradScaler(dist.device.type, enabled=scaling)
    statistics = _persistent_buffers(task)

    def lr_factor(step: int) -> float:
        return cosine_with_warmup(step, config.steps, config.warmup_steps, config.lr_floor)

    step, skipped = 0, 0
    if state_path.is_file():
        state = read_checkpoint(state_path, kind=STATE_KIND)["state_dict"]
        task.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        task.sampler.load_state_dict(state["sampler"][dist.rank])
        task.load_extra_state(state["extra"])
        _set_rng_state(state["rng"][dist.rank])
        step, skipped = state["step"], state.get("skipped_steps", 0)
        log.info("%s: resumed at step %d from %s", task.name, step, state_path)
    resumed_from = step
    metrics = MetricsLog(metrics_path, resume_step=step) if dist.is_main else None

    def save_state() -> None:
        # Every rank contributes its sampler position and RNG; rank 0 writes the file.
        samplers, rngs = dist.gather(task.sampler.state_dict()), dist.gather(_rng_state())
        if dist.is_main:
            state = {
                "step": step,
                "skipped_steps": skipped,
                "model": task.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "sampler": samplers,
                "extra": task.extra_state(),
                "rng": rngs,
            }
            save_checkpoint(state_path, STATE_KIND, {"task": task.name}, state)
        dist.barrier()

    batches = task.sampler.stream(config.loader_workers)
    started, last = time.perf_counter(), {}
    bar = tqdm(total=config.steps, initial=step, desc=task.name, disable=not dist.is_main)
    task.train()
    while step < config.steps and (stop_after is None or step < stop_after):
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * lr_factor(step)
        optimizer.zero_grad(set_to_none=True)
        before = {name: b.detach().clone() for name, b in statistics.items()}
        totals: dict[str, float] = {"nonfinite_input": 0.0}
        for micro in range(config.grad_accum):
            batch = next(batches)
            totals["nonfinite_input"] += 0.0 if _finite(batch) else 1.0
            # Only the last micro-batch all-reduces gradients; the others accumulate locally.
            last_micro = micro == config.grad_accum - 1
            sync = contextlib.nullcontext() if last_micro or not dist.enabled else model.no_sync()
            with sync:
                with torch.autocast(dist.device.type, precision, enabled=precision is not None):
                    losses = model(batch, step)
                scaler.scale(losses["loss"] / config.grad_accum).backward()
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + value.item() / config.grad_accum
        for group in optimizer.param_groups:
            if step < group.get("start_step", 0):  # a group held until its step: no update, no
                for p in group["params"]:  # Adam state (DDP still all-reduced its gradient)
                    p.grad = None
        scaler.unscale_(optimizer)
        # After DDP's all-reduce the gradients, hence their norm, are the same on every rank; with
        # clipping off (0) an infinite bound measures the norm without changing a gradient.
        bound = config.clip_grad_norm or math.inf
        grad_norm = nn.utils.clip_grad_norm_(task.parameters(), bound)
        totals = dist.mean(totals)  # every rank must take the same decisions (the ATC guard)
        bad_input = totals.pop("nonfinite_input") > 0
        finite = not bad_input and all(map(math.isfinite, [float(grad_norm), *totals.values()]))
        if finite:
            scaler.step(optimizer)
        else:  # the scaler still learns from the overflow (it lowers its scale)
            for name, value in before.items():
                statistics[name].data.copy_(value)
            skipped += 1
            log.warning("%s: step %d not finite, skipped (%d so far)", task.name, step + 1, skipped)
        scaler.update()
        step += 1
        extra = task.after_step(step, totals) if finite else {}
        last = {**totals, **extra, "skipped_steps": skipped}
        if metrics and (step % config.log_every == 0 or step == config.steps):
            lr = optimizer.param_groups[0]["lr"]
            metrics.log({"step": step, "lr": lr, **last})
        bar.update(1)
        bar.set_postfix(loss=f"{last['loss']:.3f}")
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_state()
    bar.close()
    batches.close()  # stops the loader workers
    task.eval()
    if metrics and step == config.steps:
        metrics.finish(title=task.name)
    return LoopResult(step, last, time.perf_counter() - started, resumed_from)
