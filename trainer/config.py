"""The training recipe: one typed config, from defaults, then a TOML/JSON file, then flags.

Defaults are the synthetic-world recipe, sized so that the whole pipeline on the default world
(120 species) runs in minutes on a 2-core CPU. ``--recipe biovita-paper`` starts from the
paper's instead (trainer/recipes/biovita-paper.toml). For real data, point ``model.image_text`` at
``hf-hub:imageomics/bioclip-2`` and ``model.audio`` at ``laion/clap-htsat-unfused`` (or local
copies) and raise the steps. Flags override with dotted keys: ``--set stage1.loop.steps=500``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from biovita.errors import ConfigError
from biovita.frontend import ClapFrontendSpec, FrontendSpec, frontend_spec
from biovita.settings import read_toml, set_dotted
from trainer.distributed import DEFAULT_TIMEOUT_S
from trainer.loop import LoopConfig
from trainer.tasks import DistillWeights


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# A front-end by kind ("biovita", "clap": that kind's defaults) or a spec's fields (with "kind").
FrontendChoice = str | dict[str, Any]
TINY_AUDIO = ("tiny", "tiny-cnn")


class DataConfig(_Strict):
    manifest: Path | None = Field(None, description="biovita manifest CSV (taxa.csv beside it)")
    taxa: Path | None = Field(None, description="taxa table; default: taxa.csv by the manifest")
    train_splits: list[str] = ["train"]
    eval_split: str = Field("test", description="held-out clips for the quick evaluation")
    cache_audio: bool = Field(
        True, description="keep decoded clips in RAM (false at scale: decode on demand)"
    )


class ModelConfig(_Strict):
    image_text: str = Field("tiny", description="'tiny', an open_clip dir/hub id, or a .pt")
    audio: str = Field(
        "tiny-cnn", description="'tiny' (HTS-AT), 'tiny-cnn' (CPU budget), or a CLAP dir / hub id"
    )
    embed_dim: int = Field(128, description="the tiny image/text space dimension")
    image_size: int = Field(32, description="the tiny ViT's input size")
    image_text_width: int = 128
    image_text_layers: int = 3
    audio_hidden: int = Field(32, description="tiny HTS-AT patch-embedding width")
    audio_depths: list[int] = [1, 1, 4]
    audio_patch: int = Field(8, description="tiny HTS-AT patch size (tokens = (128 / patch)^2)")
    audio_projection_dim: int = 256
    cnn_teacher: dict[str, Any] = Field(
        default_factory=lambda: {
            "embed_dim": 256,
            "stem_channels": 32,
            "blocks": [[2, 32, 2], [4, 48, 2], [4, 48, 1], [4, 96, 2], [4, 96, 1], [6, 160, 2]],
            "head_channels": 640,
            "dropout": 0.1,
        },
        description="CompactConfig of the tiny-cnn teacher backbone",
    )
    repeat_to_frames: int | None = Field(
        None, description="tile biovita log-mel frames up to this many (a tiny HTS-AT only)"
    )
    audio_frontend: FrontendChoice | None = Field(
        None,
        description="the audio tower's front-end: 'biovita', 'clap' or a spec's fields "
        "(biovita/frontend.py); default: clap for a pretrained CLAP (model.audio a dir or hub "
        "id), biovita for tiny / tiny-cnn",
    )

    def audio_frontend_spec(self) -> FrontendSpec | ClapFrontendSpec:
        if self.audio_frontend is not None:
            return frontend_spec(self.audio_frontend)
        return frontend_spec("biovita" if self.audio in TINY_AUDIO else "clap")


def _loop(**kw) -> LoopConfig:
    return LoopConfig(**kw)


class Stage0Config(_Strict):
    loop: LoopConfig = Field(default_factory=lambda: _loop(steps=300, lr=1e-3, per_species=8))


class Stage1Config(_Strict):
    loop: LoopConfig = Field(default_factory=lambda: _loop(steps=400, batch_size=32, lr=1e-3))


class Stage2WarmupConfig(_Strict):
    """The released code's Phase 1: fixed ``atc_weight`` ATC + ``aic_weight`` AIC, image and text
    frozen, the audio tower and one shared temperature trained."""

    loop: LoopConfig = Field(default_factory=lambda: _loop(steps=300, lr=1e-4, warmup_steps=0))
    atc_weight: float = Field(0.8, ge=0)
    aic_weight: float = Field(0.2, ge=0)
    shared_temperature: bool = Field(True, description="one learnable temperature for ATC and AIC")


class TemperatureConfig(_Strict):
    shared: bool = Field(False, description="one temperature (ATC's) for ATC, AIC and ITC")
    reset_to: float | None = Field(None, gt=0, description="set at the start of Stage 2")
    learnable: bool = Field(True, description="false: held where it starts")


class EmaGateConfig(_Strict):
    """The released code's AIC/ITC gate (trainer.schedule.EmaGate); replaces the ramp guard."""

    disable_above: float = Field(1.03, gt=0, description="x the ATC baseline: AIC/ITC off")
    enable_below: float = Field(1.015, gt=0, description="x the ATC baseline: back on ...")
    cool_steps: int = Field(20, ge=0, description="... after this many steps in a row below")
    ema_alpha: float = Field(0.2, gt=0, le=1, description="weight of the newest ATC in the EMA")
    baseline_batches: int = Field(20, ge=1, description="batches the ATC baseline is averaged on")
    hinge_weight: float = Field(2.0, ge=0, description="x relu(ATC - upper threshold), added")


class Stage2Config(_Strict):
    """Tuned on the default world's seen split (docs/BENCHMARKS.md, "Training on the default world").

    At the issue's lambda_AIC 0.1 the audio-image term was too weak to move A<->I past Stage 1;
    ramping it to 1.0 (the released code ramps to its targets) does. A lower LR than Stage 1's
    keeps the audio tower near its Stage 1 text alignment, and 150 steps suffice at that LR.
    The paper's recipe (trainer/recipes/biovita-paper.toml) sets the warm-up, the per-group LRs,
    the shared temperature and the EMA gate below.
    """

    loop: LoopConfig = Field(
        default_factory=lambda: _loop(steps=150, batch_size=32, lr=1e-4, warmup_steps=10)
    )
    warmup: Stage2WarmupConfig | None = Field(None, description="a warm-up phase before Stage 2")
    lambda_aic: float = Field(1.0, ge=0, description="AIC weight at the end of the ramp")
    lambda_itc: float = Field(0.1, ge=0, description="ITC weight at the end of the ramp")
    ramp_steps: int = Field(80, ge=0)
    itc_ramp_steps: int | None = Field(None, ge=0, description="ITC's own ramp; None: ramp_steps")
    guard_tolerance: float = Field(0.1, ge=0, description="relative ATC rise that stops the ramp")
    guard_warmup_steps: int = Field(30, ge=0, description="steps before the guard may stop it")
    gate: EmaGateConfig | None = Field(None, description="the released code's gate, not the guard")
    temperature: TemperatureConfig = Field(default_factory=TemperatureConfig)
    text_lr_scale: float = Field(0.1, ge=0, description="text tower LR as a fraction of the LR")
    text_weight_decay: float | None = Field(None, ge=0, description="None: the loop's")
    audio_lr_scale: float = Field(1.0, ge=0, description="audio backbone LR (adapter: the LR)")
    audio_weight_decay: float | None = Field(None, ge=0, description="None: the loop's")
    audio_trainable: list[str] | None = Field(
        None, description="name fragments of the backbone parameters to train; None: all"
    )
    audio_unfreeze_step: int = Field(0, ge=0, description="the backbone trains from this step")
    no_decay_norm_bias: bool = Field(False, description="no weight decay on norms and biases")
    from_stage1: bool = Field(True, description="False: the no-Stage-1 ablation")


class DistillConfig(_Strict):
    loop: LoopConfig = Field(default_factory=lambda: _loop(steps=500, lr=3e-3, weight_decay=0.01))
    student: dict[str, Any] = Field(
        default_factory=lambda: {
            "stem_channels": 16,
            "blocks": [[2, 16, 2], [3, 24, 2], [3, 32, 2], [3, 48, 1], [3, 64, 2]],
            "head_channels": 128,
            "dropout": 0.0,
        },
        description="CompactConfig fields; embed_dim comes from the teacher, the front-end from "
        "distill.frontend and distill.sample_rate",
    )
    frontend: FrontendChoice = Field(
        "biovita", description="the student's front-end: 'biovita', 'clap' or a spec's fields"
    )
    sample_rate: int = Field(
        FrontendSpec.model_fields["sample_rate"].default,
        gt=0,
        description="Hz the student hears: its front-end's sample_rate",
    )
    weights: DistillWeights = Field(default_factory=DistillWeights)
    max_param_ratio: float = Field(0.1, gt=0, description="student/teacher audio parameters")

    @field_validator("student")
    @classmethod
    def _set_elsewhere(cls, student: dict[str, Any]) -> dict[str, Any]:
        # One place per setting: a second spelling inside the student would be silently overruled.
        if "frontend" in student:
            raise ValueError(
                "the student's front-end is not a distill.student key: set distill.frontend "
                "(and its rate with distill.sample_rate)"
            )
        if "embed_dim" in student:
            raise ValueError(
                "the student's embed_dim is the teacher's: remove it from distill.student"
            )
        return student

    def student_frontend(self) -> FrontendSpec | ClapFrontendSpec:
        """``distill.frontend`` at ``distill.sample_rate``."""
        spelled = self.frontend.get("sample_rate") if isinstance(self.frontend, dict) else None
        if spelled not in (None, self.sample_rate):
            raise ConfigError(
                f"distill.frontend says sample_rate {spelled}, distill.sample_rate {self.sample_rate}",
                hint="set the student's rate with distill.sample_rate only",
            )
        spec = frontend_spec(self.frontend)
        return frontend_spec({**spec.model_dump(), "sample_rate": self.sample_rate})


class BankConfig(_Strict):
    image_weight: float = Field(0.5, ge=0, le=1, description="image prototype share of the bank")
    image_splits: list[str] = Field(
        ["train", "unseen"], description="whose images form the prototypes (unseen: zero-shot)"
    )


class DistributedConfig(_Strict):
    timeout_s: float = Field(
        DEFAULT_TIMEOUT_S,
        gt=0,
        description="seconds a collective waits for the slowest rank before the run is ended",
    )


class TrainConfig(_Strict):
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    stage0: Stage0Config = Field(default_factory=Stage0Config)
    stage1: Stage1Config = Field(default_factory=Stage1Config)
    stage2: Stage2Config = Field(default_factory=Stage2Config)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    bank: BankConfig = Field(default_factory=BankConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)


def _parse_value(text: str) -> Any:
    # JSON first (numbers, booleans, lists, and objects such as distill.student={...}, which
    # biovita.settings.parse_value would read as TOML), else the bare string: model.audio=laion/x
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_override(tree: dict, assignment: str) -> None:
    """``"stage1.loop.steps=500"`` -> ``tree["stage1"]["loop"]["steps"] = 500``."""
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(
            f"override {assignment!r} is not key=value", hint="e.g. stage1.loop.steps=500"
        )
    set_dotted(tree, key.strip(), _parse_value(value.strip()))


def read_config_file(path: str | Path) -> dict:
    path = Path(path)
    if path.suffix != ".json":
        return read_toml(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", hint="check the path")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ConfigError(f"cannot parse {path}: {err}", hint="fix the JSON syntax") from err


RECIPES = Path(__file__).parent / "recipes"


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.toml"))


def read_recipe(name: str) -> dict:
    """A named preset (``trainer/recipes/NAME.toml``, shipped with the package)."""
    path = RECIPES / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(
            f"no recipe named {name!r}", hint=f"choose one of: {', '.join(recipe_names())}"
        )
    return read_toml(path)


def _merge(base: dict, top: dict) -> dict:
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def load_config(
    path: str | Path | None = None, overrides: list[str] = (), recipe: str | None = None
) -> TrainConfig:
    """Defaults, then the named ``recipe``, then the file at ``path``, then ``overrides``."""
    tree = read_recipe(recipe) if recipe else {}
    if path:
        _merge(tree, read_config_file(path))
    for assignment in overrides:
        apply_override(tree, assignment)
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(
            f"invalid training config: {err}", hint="see trainer/config.py for every field"
        ) from err
