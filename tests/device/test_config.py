import re
from pathlib import Path

import pytest

from biovita.errors import ConfigError
from device.config import load_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "device" / "device.example.toml"


def test_file_then_environment_then_flags(tmp_path):
    toml = tmp_path / "d.toml"
    toml.write_text('[mqtt]\nhost = "from-file"\nport = 1884\n[classify]\nallow = ["a"]\n')
    env = {"BIOVITA_MQTT__HOST": "from-env", "BIOVITA_CLASSIFY__ALLOW": '["x", "y"]'}
    cfg = load_config(toml, environ=env, overrides={"mqtt.host": "from-flag"})
    assert cfg.mqtt.host == "from-flag"
    assert cfg.mqtt.port == 1884
    assert cfg.classify.allow == ["x", "y"]
    assert load_config(toml, environ=env).mqtt.host == "from-env"


def test_bad_values_name_the_key_and_point_at_the_example(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(None, environ={"BIOVITA_MQTT__PORT": "99999"})
    assert "mqtt.port" in str(err.value) and "device.example.toml" in err.value.hint
    with pytest.raises(ConfigError, match="unknown_key"):
        load_config(None, environ={}, overrides={"audio.unknown_key": 1})
    with pytest.raises(ConfigError, match="confirm_hits"):
        load_config(
            None, environ={}, overrides={"classify.confirm_hits": 3, "classify.confirm_windows": 2}
        )
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", environ={})


def test_the_example_config_documents_every_key():
    """Every key of every section appears in the example, which itself loads as-is."""
    from device.config import DeviceConfig

    cfg = load_config(EXAMPLE, environ={})
    text = EXAMPLE.read_text()
    for section, field in DeviceConfig.model_fields.items():
        if field.annotation is Path or section == "bundle":
            assert "bundle" in text
            continue
        sub = getattr(cfg, section)
        assert f"[{section}]" in text, section
        for key in type(sub).model_fields:
            assert f"\n{key} =" in text or f"\n# {key} =" in text, f"{section}.{key}"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"windows.watchdog_s": 1e9}, "unnoticed (the recorder deaf)"),
        ({"windows.watchdog_s": 0.6, "audio.block_s": 0.5}, "never hears anything"),
    ],
)
def test_a_watchdog_that_makes_the_recorder_deaf_is_refused_with_the_reason(overrides, reason):
    with pytest.raises(ConfigError, match=re.escape(reason)) as err:
        load_config(None, environ={}, overrides=overrides)
    assert "watchdog_s" in str(err.value)
