"""Settings: flags > environment > defaults, declared once and documented in CONTRACT terms."""

from __future__ import annotations

from pathlib import Path

from tessel.cli.main import build_parser
from tessel.config import SETTINGS, Secret, Settings, load_settings


def test_flags_win_over_environment_which_wins_over_defaults() -> None:
    env = {"TESSEL_DATA_DIR": "/env/dir", "TESSEL_PORT": "9000"}
    s = load_settings({"port": 9100}, env)
    assert s.port == 9100
    assert s.data_dir == Path("/env/dir")
    assert load_settings({}, {}).data_dir == Path("./tessel-data")


def test_every_setting_is_a_field_and_every_field_a_setting() -> None:
    assert {s.name for s in SETTINGS} == set(Settings.__slots__)  # type: ignore[attr-defined]


def test_secrets_never_print() -> None:
    s = load_settings({}, {"TESSEL_SECRET_ACCESS_KEY": "hunter2"})
    assert isinstance(s.secret_access_key, Secret)
    assert "hunter2" not in repr(s)
    assert s.secret_access_key.reveal() == "hunter2"


def test_every_flag_in_the_table_exists_on_serve() -> None:
    help_text = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    for spec in SETTINGS:
        if spec.flag:
            assert spec.flag in help_text, spec.flag


def test_configuration_doc_lists_every_setting() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    for spec in SETTINGS:
        assert f"| {spec.name} | {spec.env or ''} | {spec.flag or ''} |" in doc, spec.name
