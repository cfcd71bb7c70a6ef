from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from video_ai.domain.errors import ConfigError
from video_ai.settings import json_schema, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schema_matches_the_settings_model() -> None:
    committed = json.loads((ROOT / "config" / "config.schema.json").read_text())
    assert committed == json_schema(), "run: video-ai config schema --out config/config.schema.json"


def test_committed_config_is_valid_and_keeps_the_seed_keys() -> None:
    settings = load_settings(ROOT / "config" / "config.yml", environ={})
    assert settings.qdrant.host and settings.qdrant.port == 6333
    assert settings.logging.level == "INFO"


def test_environment_overrides_nested_keys(tmp_path: Path) -> None:
    settings = load_settings(
        ROOT / "config" / "config.yml",
        environ={"VIDEO_AI__SAMPLING__FPS": "2.5", "VIDEO_AI__QDRANT__API_KEY": "s3cret",
                 "VIDEO_AI__LOGGING__LEVEL": "DEBUG"},
    )
    assert settings.sampling.fps == 2.5
    assert settings.logging.level == "DEBUG"
    assert settings.qdrant.api_key is not None and settings.qdrant.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in settings.model_dump_json()


def test_invalid_value_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("sampling:\n  fps: -1\n")
    with pytest.raises(ConfigError) as err:
        load_settings(bad, environ={})
    assert str(bad) in err.value.message and "sampling.fps" in err.value.message
    assert "\n" not in err.value.message


def test_unknown_key_and_secret_in_file_are_refused(tmp_path: Path) -> None:
    typo = tmp_path / "typo.yml"
    typo.write_text("sampling:\n  fsp: 2\n")
    with pytest.raises(ConfigError, match=r"sampling\.fsp"):
        load_settings(typo, environ={})
    secret = tmp_path / "secret.yml"
    secret.write_text("qdrant:\n  api_key: abc\n")
    with pytest.raises(ConfigError, match=r"qdrant\.api_key"):
        load_settings(secret, environ={})


def test_deployed_profile_refuses_loopback_and_http(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("profile: deployed\nnetwork:\n  allow_http: true\n")
    with pytest.raises(ConfigError, match="development profile"):
        load_settings(cfg, environ={})
    assert load_settings(None, environ={}).development().network.allow_private_addresses


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("sampling: [\n", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("model:\n  batch_size: 0\n", "model.batch_size"),
    ],
)
def test_cli_config_check_prints_one_line_and_exits_2(tmp_path: Path, content: str, needle: str) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(content)
    proc = subprocess.run([sys.executable, "-m", "video_ai.cli", "config", "check", str(cfg)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and str(cfg) in lines[0]
    assert "Traceback" not in proc.stderr


def test_environment_values_json_null_and_scalars() -> None:
    settings = load_settings(
        ROOT / "config" / "config.yml",
        environ={"VIDEO_AI__NETWORK__ALLOWED_PORTS": "[443, 8443]", "VIDEO_AI__SAMPLING__MAX_FRAMES": "null",
                 "VIDEO_AI__QDRANT__HTTPS": "true", "VIDEO_AI__API__API_KEY_HASHES": '{"ab12": "tenant-a"}'},
    )
    assert settings.network.allowed_ports == [443, 8443] and settings.sampling.max_frames is None
    assert settings.qdrant.https is True and settings.api.api_key_hashes == {"ab12": "tenant-a"}
    with pytest.raises(ConfigError, match=r"network\.allowed_ports"):
        load_settings(ROOT / "config" / "config.yml", environ={"VIDEO_AI__NETWORK__ALLOWED_PORTS": "[443,"})
