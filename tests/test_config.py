"""Configuration: YAML, environment overrides, secret files, unknown keys, check-config masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.cli import main
from exporter.config import ConfigError, effective_config, load_config


def write(tmp_path, text: str):
    path = tmp_path / "analytics.yaml"
    path.write_text(text)
    return str(path)


def test_documented_default_file_equals_the_built_in_defaults(tmp_path):
    built_in = load_config(str(write(tmp_path, "")), environ={})  # an empty file: every default
    assert load_config("config/analytics.yaml", environ={}) == built_in


def test_documented_default_file_mentions_every_key():
    text = open("config/analytics.yaml", encoding="utf-8").read()
    undocumented = [key for key in _leaf_keys(effective_config(load_config(environ={}))) if f"{key}:" not in text]
    assert undocumented == []


def _leaf_keys(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield key


def test_environment_overrides_the_file(tmp_path):
    path = write(tmp_path, "cache:\n  ttl_seconds: 60\nsources:\n  plausible:\n    site_id: from-file\n")
    config = load_config(path, environ={"REFRESH_INTERVAL": "120", "PLAUSIBLE_SITE_ID": "from-env",
                                        "CORS_ALLOWED_ORIGINS": "https://a.example, https://b.example"})
    assert config.cache.ttl_seconds == 120
    assert config.sources.plausible.site_id == "from-env"
    assert config.server.cors_allowed_origins == ("https://a.example", "https://b.example")


def test_secret_files(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("file-key\n")
    config = load_config(write(tmp_path, ""), environ={"PLAUSIBLE_API_KEY_FILE": str(key_file)})
    assert config.sources.plausible.api_key.reveal() == "file-key"
    with pytest.raises(ConfigError, match="cannot read secret file"):
        load_config(write(tmp_path, ""), environ={"API_TOKEN_FILE": str(tmp_path / "missing")})


def test_unknown_key_names_the_file_and_path(tmp_path):
    path = write(tmp_path, "sources:\n  plausible:\n    api_keys: x\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value).startswith(path) and "sources.plausible.api_keys" in str(raised.value)
    assert "api_key" in str(raised.value)  # the valid keys are listed


@pytest.mark.parametrize("text, fragment", [
    ("cache:\n  ttl_seconds: -1\n", "ttl_seconds must be positive"),
    ("sources:\n  plausible:\n    api_version: v3\n", "not one of auto, v1, v2"),
    ("metrics:\n  usage_windows: [2w]\n", "not one of"),
    ("sources:\n  plausible:\n    timezone: Mars/Olympus\n", "not an IANA timezone"),
    ("[1, 2]\n", "top level must be a mapping"),
])
def test_invalid_values_are_clear_errors(tmp_path, text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(write(tmp_path, text), environ={})


def test_chosen_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.yaml"), environ={})


def test_check_config_masks_secrets(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PLAUSIBLE_API_KEY", "very-secret-key")
    monkeypatch.setenv("FEEDBACK_ADMIN_TOKEN", "very-secret-token")
    assert main(["check-config", "--config", write(tmp_path, "")]) == 0
    out = capsys.readouterr().out
    assert "very-secret" not in out and "api_key: '***'" in out


def test_check_config_exits_1_with_a_message(tmp_path, capsys):
    assert main(["check-config", "--config", write(tmp_path, "server:\n  port: 0\n")]) == 1
    assert "server: port must be 1..65535" in capsys.readouterr().err


def test_check_config_refuses_a_missing_events_file_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EVENTS_PATH", str(tmp_path / "nonexistent" / "events.jsonl"))
    assert main(["check-config", "--config", write(tmp_path, "")]) == 1
    assert capsys.readouterr().err == (f"configuration error: events.path: {tmp_path}/nonexistent/events.jsonl "
                                       "does not exist\n")
    (tmp_path / "nonexistent").mkdir()
    (tmp_path / "nonexistent" / "events.jsonl").write_text("")
    assert main(["check-config", "--config", write(tmp_path, "")]) == 0


def test_check_config_says_in_one_line_when_the_defaults_apply(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no config/analytics.yaml here
    monkeypatch.delenv("ANALYTICS_CONFIG", raising=False)
    assert main(["check-config"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ("no configuration file at config/analytics.yaml: the built-in defaults (and the "
                            "environment) apply\n")
    assert "sources:" in captured.out
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)  # the repository's documented file: no note
    assert main(["check-config"]) == 0
    assert capsys.readouterr().err == ""
