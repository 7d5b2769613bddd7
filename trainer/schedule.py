"""Schedules: the learning-rate curve, and Stage 2's loss-weight ramps with their ATC guards
(``RampGuard``: the synthetic recipe; ``EmaGate``: the released BioVITA code's)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def cosine_with_warmup(step: int, total_steps: int, warmup_steps: int, floor: float = 0.0) -> float:
    """LR multiplier: linear warm-up from ~0 to 1, then a cosine down to ``floor`` at the end."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def linear_ramp(step: int, ramp_steps: int) -> float:
    """0 -> 1 over ``ramp_steps`` (1 at once when 0)."""
    return 1.0 if ramp_steps <= 0 else min(1.0, step / ramp_steps)


@dataclass
class RampGuard:
    """Loss weights ramped linearly from 0 to their targets, held when ATC degrades.

    Stage 2 adds the audio-image and image-text terms to an audio tower that Stage 1 aligned to
    text. Ramping them in slowly lets the audio tower move toward the images without forgetting
    the text; if the ATC loss (smoothed) still rises more than ``tolerance`` (relative) above the
    best it has reached, the ramp stops for good and the weights stay where they were. The guard
    only judges after ``warmup_steps``: before that the moving average still remembers the first,
    noisy batches, and one lucky batch would set a "best" no later average can match.
    """

    targets: dict[str, float]
    ramp_steps: int
    tolerance: float = 0.1
    ema_decay: float = 0.98
    warmup_steps: int = 0
    ema: float | None = None
    best: float = math.inf
    stopped_at: int | None = None
    frozen_fraction: float = 1.0
    history: list[tuple[int, float]] = field(default_factory=list)

    def fraction(self, step: int) -> float:
        if self.stopped_at is not None:
            return self.frozen_fraction
        return linear_ramp(step, self.ramp_steps)

    def weights(self, step: int) -> dict[str, float]:
        f = self.fraction(step)
        return {name: target * f for name, target in self.targets.items()}

    def observe(self, step: int, atc_loss: float) -> bool:
        """Feed this step's ATC loss; True when this observation stopped the ramp."""
        self.ema = (
            atc_loss
            if self.ema is None
            else self.ema_decay * self.ema + (1 - self.ema_decay) * atc_loss
        )
        if step <= self.warmup_steps:
            return False
        self.best = min(self.best, self.ema)
        if self.stopped_at is None and self.ema > self.best * (1.0 + self.tolerance):
            self.frozen_fraction = self.fraction(step)
            self.stopped_at = step
            self.history.append((step, self.ema))
            return True
        return False

    def state_dict(self) -> dict:
        return {
            "ema": self.ema,
            "best": self.best,
            "stopped_at": self.stopped_at,
            "frozen_fraction": self.frozen_fraction,
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict) -> None:
        self.ema = state["ema"]
        self.best = state["best"]
        self.stopped_at = state["stopped_at"]
        self.frozen_fraction = state["frozen_fraction"]
        self.history = [tuple(h) for h in state["history"]]


@dataclass
class EmaGate:
    """The released Stage 2's loss weights (dahlian00/BioVITA ``train/stage2_vita.py``, AVGate).

    AIC and ITC ramp linearly to their targets, each over its own steps. An EMA of the ATC loss,
    started at the ATC ``baseline`` measured before Phase 2, switches both off while it is above
    ``disable_above`` x baseline, and back on once it has stayed at or below ``enable_below`` x
    baseline for ``cool_steps`` steps in a row. On top, a hinge ``hinge_weight * relu(ATC -
    disable_above x baseline)`` pulls ATC back under the upper threshold.

    The gate is fed the step's ATC after the step (averaged over DDP ranks, so every rank takes
    the same decision) and decides the next step's weights; the released code, which gathers
    the batch across ranks, decides the same step's: one step of lag.
    """

    targets: dict[str, float]
    ramp_steps: dict[str, int]
    disable_above: float = 1.03
    enable_below: float = 1.015
    ema_alpha: float = 0.2
    cool_steps: int = 20
    hinge_weight: float = 2.0
    baseline: float | None = None
    ema: float | None = None
    enabled: bool = True
    cool: int = 0
    switches: list[tuple[int, bool]] = field(default_factory=list)

    def start(self, baseline: float) -> None:
        self.baseline, self.ema = baseline, baseline

    @property
    def upper(self) -> float:
        if self.baseline is None:
            raise RuntimeError("EmaGate.start(baseline) must be called before training")
        return self.baseline * self.disable_above

    def weights(self, step: int) -> dict[str, float]:
        on = 1.0 if self.enabled else 0.0
        return {
            name: on * target * linear_ramp(step, self.ramp_steps.get(name, 0))
            for name, target in self.targets.items()
        }

    def observe(self, step: int, atc_loss: float) -> None:
        self.ema = self.ema_alpha * atc_loss + (1 - self.ema_alpha) * self.ema
        if self.enabled and self.ema > self.upper:
            self.enabled, self.cool = False, 0
            self.switches.append((step, False))
        elif not self.enabled:
            self.cool = self.cool + 1 if self.ema <= self.baseline * self.enable_below else 0
            if self.cool >= self.cool_steps:
                self.enabled = True
                self.switches.append((step, True))

    def state_dict(self) -> dict:
        return {
            "baseline": self.baseline,
            "ema": self.ema,
            "enabled": self.enabled,
            "cool": self.cool,
            "switches": list(self.switches),
        }

    def load_state_dict(self, state: dict) -> None:
        self.baseline, self.ema = state["baseline"], state["ema"]
        self.enabled, self.cool = state["enabled"], state["cool"]
        self.switches = [tuple(s) for s in state["switches"]]
