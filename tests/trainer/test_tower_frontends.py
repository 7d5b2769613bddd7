"""Each audio tower names its front-end; configs pick it, checkpoints record it by kind."""

from __future__ import annotations

import pytest
import torch

from biovita.errors import ConfigError
from biovita.frontend import ClapFrontendSpec, FrontendSpec
from trainer.checkpoint import load_student, save_student
from trainer.config import load_config
from trainer.models.compact import CompactAudioTower, CompactConfig
from trainer.models.encoders import (
    AudioTeacher,
    ClapAudioModelWithProjection,
    audio_tower_from_config,
    tiny_clap_audio_config,
)
from trainer.models.frontend import ClapLogMel, LogMel

SMALL_STUDENT = {"stem_channels": 8, "blocks": [(2, 8, 2)], "head_channels": 16, "embed_dim": 8}


def test_a_pretrained_clap_tower_defaults_to_the_clap_front_end():
    assert load_config().model.audio_frontend_spec() == FrontendSpec()  # tiny-cnn: the world's
    assert load_config(overrides=["model.audio=tiny"]).model.audio_frontend_spec() == FrontendSpec()
    pretrained = load_config(overrides=["model.audio=laion/clap-htsat-unfused"])
    assert pretrained.model.audio_frontend_spec() == ClapFrontendSpec()
    named = load_config(overrides=["model.audio=tiny", "model.audio_frontend=clap"])
    assert named.model.audio_frontend_spec() == ClapFrontendSpec()
    spelled = load_config(overrides=['model.audio_frontend={"kind": "clap", "window_s": 5}'])
    assert spelled.model.audio_frontend_spec() == ClapFrontendSpec(window_s=5)


def test_the_student_rate_is_a_config_key():
    assert load_config().distill.student_frontend() == FrontendSpec()
    faster = load_config(overrides=["distill.sample_rate=32000"]).distill.student_frontend()
    assert faster == FrontendSpec(sample_rate=32_000)
    clash = load_config(overrides=['distill.frontend={"kind": "biovita", "sample_rate": 8000}'])
    with pytest.raises(ConfigError, match="distill.sample_rate"):
        clash.distill.student_frontend()
    with pytest.raises(ConfigError, match="Nyquist"):  # CLAP's 14 kHz band needs 28 kHz or more
        load_config(overrides=["distill.frontend=clap"]).distill.student_frontend()


def test_a_clap_front_end_teacher_records_it_in_its_config():
    torch.manual_seed(0)
    clap = ClapAudioModelWithProjection(
        tiny_clap_audio_config(hidden=16, depths=(1, 1, 2), projection_dim=16)
    )
    teacher = AudioTeacher(clap, 8, ClapFrontendSpec(window_s=2.0)).eval()
    assert isinstance(teacher.logmel, ClapLogMel)
    features = teacher.features(torch.randn(1, 96_000))
    assert features.shape == (1, 1, 201, 64)  # centred frames: 1 + 96000 // 480
    config = teacher.config_dict()
    assert config["frontend"]["kind"] == "clap"
    rebuilt = audio_tower_from_config(config)
    assert rebuilt.frontend == ClapFrontendSpec(window_s=2.0)
    # a config written before front-ends had a kind is a biovita one
    old = {**config, "frontend": {"sample_rate": 16_000, "window_s": 3.0}}
    assert isinstance(audio_tower_from_config(old).logmel, LogMel)


def test_a_student_checkpoint_records_its_front_end(tmp_path):
    spec = FrontendSpec(sample_rate=32_000)
    student = CompactAudioTower(CompactConfig(**SMALL_STUDENT, frontend=spec))
    save_student(tmp_path / "student.pt", student)
    loaded, _ = load_student(tmp_path / "student.pt")
    assert loaded.config.frontend == spec
    old = CompactConfig.from_dict({**SMALL_STUDENT, "frontend": {"sample_rate": 16_000}})
    assert old.frontend == FrontendSpec()
