"""The paper's recipe (trainer/recipes/biovita-paper.toml): the EMA gate, the per-group LRs and
the unfreezing at a step, on tiny models of the real classes; and which stages a pipeline runs."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from transformers import ClapAudioConfig, ClapAudioModelWithProjection

from biovita.errors import ConfigError
from biovita.manifest import ManifestRow, read_manifest, write_manifest
from trainer.cli import main
from trainer.config import load_config
from trainer.data import load_species_data
from trainer.distributed import DistContext
from trainer.loop import train
from trainer.models.encoders import save_image_text_dir, tiny_image_text
from trainer.models.vita import VitaModel
from trainer.schedule import EmaGate
from trainer.stages import (
    _sampler,
    _stage2_plan,
    _stage2_weights,
    new_audio_teacher,
    pipeline_stages,
)
from trainer.tasks import VitaTask, is_norm_or_bias

from .conftest import TINY_RECIPE

PAPER = load_config(recipe="biovita-paper")


def _gate(**kw) -> EmaGate:
    gate = EmaGate({"aic": 0.1, "itc": 0.1}, {"aic": 600, "itc": 300}, **kw)
    gate.start(2.0)
    return gate


def test_the_recipe_holds_the_released_values():
    s1, s2 = PAPER.stage1.loop, PAPER.stage2
    assert (s1.lr, s1.batch_size, s1.weight_decay, s1.per_species, s1.min_per_species) == (
        1e-4, 64, 0.05, 20, 5,
    )  # fmt: skip
    assert s2.warmup.atc_weight == 0.8 and s2.warmup.aic_weight == 0.2
    assert s2.loop.lr * s2.text_lr_scale == pytest.approx(5e-6)
    assert s2.loop.lr * s2.audio_lr_scale == pytest.approx(1e-5)
    assert s2.audio_unfreeze_step == 300 and s2.loop.betas == (0.9, 0.98)
    assert s2.temperature.reset_to == 0.2 and not s2.temperature.learnable
    assert (s2.ramp_steps, s2.itc_ramp_steps, s2.lambda_aic, s2.lambda_itc) == (600, 300, 0.1, 0.1)
    assert (s2.gate.disable_above, s2.gate.enable_below) == (1.03, 1.015)
    assert load_config().stage2.gate is None  # the synthetic recipe stays the default


def test_gate_ramps_each_term_on_its_own_schedule():
    gate = _gate()
    assert gate.weights(0) == {"aic": 0.0, "itc": 0.0}
    assert gate.weights(150) == pytest.approx({"aic": 0.025, "itc": 0.05})
    assert gate.weights(300) == pytest.approx({"aic": 0.05, "itc": 0.1})
    assert gate.weights(900) == pytest.approx({"aic": 0.1, "itc": 0.1})


def test_gate_disables_above_1_03_and_re_enables_after_cool_steps_below_1_015():
    gate = _gate(ema_alpha=1.0, cool_steps=3)  # alpha 1: the EMA is the last loss
    gate.observe(1, 2.0 * 1.029)
    assert gate.enabled
    gate.observe(2, 2.0 * 1.031)
    assert not gate.enabled and gate.weights(900) == {"aic": 0.0, "itc": 0.0}
    gate.observe(3, 2.0 * 1.02)  # between the thresholds: stays off
    gate.observe(4, 2.0 * 1.01)
    gate.observe(5, 2.0 * 1.01)
    gate.observe(6, 2.0 * 1.02)  # the run below 1.015 is broken: counting starts again
    assert not gate.enabled
    for step in (7, 8):
        gate.observe(step, 2.0)
        assert not gate.enabled
    gate.observe(9, 2.0)
    assert gate.enabled and gate.switches == [(2, False), (9, True)]


def test_gate_ema_and_state_round_trip():
    gate = _gate()
    gate.observe(1, 3.0)
    assert gate.ema == pytest.approx(0.2 * 3.0 + 0.8 * 2.0)
    copy = EmaGate({"aic": 0.1, "itc": 0.1}, {"aic": 600, "itc": 300})
    copy.load_state_dict(gate.state_dict())
    assert copy.state_dict() == gate.state_dict() and copy.upper == pytest.approx(2.06)


def test_the_released_fragments_pick_patch_embedding_and_projection_of_clap_htsat_unfused():
    with torch.device("meta"):
        clap = ClapAudioModelWithProjection(ClapAudioConfig())
    picked = [
        n for n, _ in clap.named_parameters() if any(f in n for f in PAPER.stage2.audio_trainable)
    ]
    assert sorted(picked) == sorted(
        ["audio_model.audio_encoder.patch_embed.proj.weight",
         "audio_model.audio_encoder.patch_embed.proj.bias",
         *(f"audio_projection.linear{i}.{w}" for i in (1, 2) for w in ("weight", "bias"))]
    )  # fmt: skip


def _tiny_paper(world: Path, **sets) -> tuple[VitaTask, VitaModel]:
    """A Stage 2 task of the paper's plan on tiny models of the real classes (HTS-AT, open_clip)."""
    cfg = load_config(
        None,
        [*TINY_RECIPE, f"data.manifest={world / 'manifest.csv'}"]
        + [f"{k}={v}" for k, v in sets.items()],
        recipe="biovita-paper",
    )
    torch.manual_seed(0)
    image_text = tiny_image_text(32, 32, width=32, layers=2)
    vita = VitaModel(image_text, new_audio_teacher(cfg, 32))
    data = load_species_data(world / "manifest.csv")
    plan, temperature = _stage2_plan(cfg.stage2)
    weights = _stage2_weights(cfg.stage2)
    weights.schedule.start(3.0)
    sampler = _sampler(data, cfg.stage2.loop, DistContext())
    return VitaTask("stage2", vita, data, sampler, weights, plan, temperature), vita, cfg


def test_param_groups_lrs_weight_decay_and_frozen_parts(tiny_world):
    task, vita, cfg = _tiny_paper(tiny_world)
    groups = task.param_groups(cfg.stage2.loop.lr)
    by_param = {id(p): g for g in groups for p in g["params"]}
    names = dict(vita.named_parameters())
    for name, p in names.items():
        g = by_param.get(id(p))
        if name.startswith("audio.adapter."):
            assert g["lr"] == 1e-4 and g.get("weight_decay") is None  # the loop's 0.05
        elif name.startswith("audio.clap."):
            inner = name.removeprefix("audio.clap.")
            if any(f in inner for f in cfg.stage2.audio_trainable):
                assert g["lr"] == pytest.approx(1e-5) and g["start_step"] == 300, name
                assert g["weight_decay"] == (0.0 if is_norm_or_bias(inner) else 0.02), name
            else:
                assert g is None and not p.requires_grad, name
        elif name.startswith("clip.visual.") or "scale" in name:
            assert g is None and not p.requires_grad, name
        else:  # the text tower
            assert name.startswith("clip.") and g["lr"] == pytest.approx(5e-6), name
            assert g["weight_decay"] == (0.0 if is_norm_or_bias(name) else 0.01), name
    assert any(is_norm_or_bias(n) for n in names if n.startswith("clip.transformer"))
    # One temperature, reset to 0.2, under every name.
    for scale in (vita.atc_scale(), vita.aic_scale(), vita.itc_scale()):
        assert float(scale) == pytest.approx(5.0)


def test_clap_upper_parameters_train_only_from_the_unfreeze_step(tiny_world, tmp_path):
    task, vita, cfg = _tiny_paper(
        tiny_world, **{"stage2.audio_unfreeze_step": 3, "stage2.loop.epochs": "null"}
    )
    loop = cfg.stage2.loop.model_copy(update={"steps": 5, "batch_size": 8, "checkpoint_every": 1})
    clap = dict(vita.audio.clap.named_parameters())
    picked = {n for n in clap if any(f in n for f in cfg.stage2.audio_trainable)}
    snapshot = lambda: {n: p.detach().clone() for n, p in clap.items()}  # noqa: E731
    adapter0 = vita.audio.adapter.weight.detach().clone()
    start = snapshot()
    state, metrics = tmp_path / "state.pt", tmp_path / "m.jsonl"
    train(task, loop, state, metrics, stop_after=3)
    after3 = snapshot()
    assert not torch.equal(vita.audio.adapter.weight, adapter0)
    assert all(torch.equal(after3[n], start[n]) for n in clap), "CLAP moved before its step"
    train(task, loop, state, metrics)  # resumes at 3 and trains steps 4, 5
    after5 = snapshot()
    assert all(not torch.equal(after5[n], start[n]) for n in picked if "weight" in n)
    assert all(torch.equal(after5[n], start[n]) for n in clap if n not in picked)
    assert float(vita.atc_scale()) == pytest.approx(5.0)


def _no_images_manifest(world: Path, out: Path) -> Path:
    rows = [
        ManifestRow(r.audio_path, r.species_id, r.split, (), r.start_s, r.end_s, r.source)
        for r in read_manifest(world / "manifest.csv")
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "taxa.csv").write_bytes((world / "taxa.csv").read_bytes())
    return write_manifest(out / "manifest.csv", rows)


def test_pipeline_stages_follow_the_model_and_the_data(tiny_world, tmp_path):
    with_images = tiny_world / "manifest.csv"
    without = _no_images_manifest(tiny_world, tmp_path / "noimg")

    def stages(manifest, image_text):
        sets = [f"data.manifest={manifest}", f"model.image_text={image_text}"]
        return pipeline_stages(load_config(None, sets))

    assert stages(with_images, "tiny") == ["stage0", "stage1", "stage2", "distill", "bank"]
    assert stages(with_images, "hf-hub:imageomics/bioclip-2") == [
        "stage1", "stage2", "distill", "bank",
    ]  # fmt: skip
    assert stages(without, "/some/open_clip") == ["stage1", "distill", "bank"]
    with pytest.raises(ConfigError, match="cannot be trained from scratch"):
        stages(without, "tiny")


@pytest.fixture(scope="module")
def bioclip_folder(tmp_path_factory) -> Path:
    """A pretrained image-text model in the open_clip folder layout (tiny, random weights)."""
    torch.manual_seed(0)
    return save_image_text_dir(
        tiny_image_text(32, 32, width=32, layers=2), tmp_path_factory.mktemp("oc")
    )


def _tiny_sets(extra: list[str]) -> list[str]:
    sets = [*TINY_RECIPE, *extra]
    return [a for s in sets for a in ("--set", s)]


def test_paper_pipeline_on_a_manifest_without_images_runs_stage1_only(
    tiny_world, bioclip_folder, tmp_path
):
    manifest = _no_images_manifest(tiny_world, tmp_path / "noimg")
    run = tmp_path / "run"
    sets = _tiny_sets([f"model.image_text={bioclip_folder}", "stage1.loop.epochs=0.2"])
    args = ["pipeline", "--recipe", "biovita-paper", "--manifest", str(manifest), "--out", str(run)]
    assert main([*args, *sets]) == 0
    assert {p.name for p in run.glob("*.pt")} == {"stage1.pt", "student.pt"}
    assert (run / "species.npz").is_file()
    meta = torch.load(run / "student.pt", weights_only=True)["meta"]
    assert meta["teacher_checkpoint"] == "stage1.pt"
    # epochs -> steps: 0.2 of an epoch of (per-species capped, oversampled-to-5) clips, batch 8.
    per_species = Counter(r.species_id for r in read_manifest(manifest) if r.split == "train")
    items = sum(min(max(n, 5), 20) for n in per_species.values())
    stage1 = torch.load(run / "stage1.pt", weights_only=True)["meta"]
    assert stage1["step"] == math.ceil(0.2 * items / 8)


def test_paper_stage2_warms_up_then_gates(tiny_world, bioclip_folder, tmp_path):
    run = tmp_path / "run"
    sets = _tiny_sets(
        [
            f"model.image_text={bioclip_folder}",
            "stage1.loop.epochs=null",
            "stage2.warmup.loop.epochs=null",
            "stage2.warmup.loop.steps=2",
            "stage2.warmup.loop.batch_size=8",
            "stage2.loop.epochs=null",
            "stage2.audio_unfreeze_step=2",
            "stage2.gate.baseline_batches=2",
        ]
    )
    args = ["stage1", "--recipe", "biovita-paper", "--world", str(tiny_world), "--out", str(run)]
    assert main([*args, *sets]) == 0
    args[0] = "stage2"
    assert main([*args, *sets]) == 0
    assert (run / "stage2_warmup.pt").is_file()
    meta = torch.load(run / "stage2.pt", weights_only=True)["meta"]
    assert meta["gate"]["baseline"] > 0 and meta["step"] == 4
    vita, _ = VitaModel.load(run / "stage2.pt")
    assert float(vita.atc_scale()) == pytest.approx(5.0)
