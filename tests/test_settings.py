"""The settings declaration: every ``meshplane serve`` setting is declared once, and its flag,
its environment variable and the README's configuration table all follow from it."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from meshplane.cli.main import cli
from meshplane.server.setting import Kind, parse_bool
from meshplane.server.settings import SETTINGS, Settings, readme_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_table_is_the_declaration() -> None:
    text = README.read_text()
    found = re.search(
        r"<!-- settings table: begin -->\n(.*?)<!-- settings table: end -->", text, re.S
    )
    assert found is not None, "README.md lost its settings table markers"
    assert found.group(1) == readme_table(), (
        "README.md's configuration table differs from meshplane/server/settings.py: "
        "paste the output of `python -m meshplane.server.settings` between the markers"
    )


def test_every_setting_is_a_flag_of_serve_with_its_variable() -> None:
    names = [setting.name for setting in SETTINGS]
    assert len(names) == len(set(names))
    assert len({s.flag for s in SETTINGS}) == len(SETTINGS)
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)
    result = CliRunner().invoke(cli, ["serve", "--help"], terminal_width=400)
    assert result.exit_code == 0, result.output
    help_text = " ".join(result.output.split())
    for setting in SETTINGS:
        assert setting.flag in help_text, setting.flag
        assert setting.env in help_text, setting.env
        assert setting.env == "MESHPLANE_" + setting.flag[2:].upper().replace("-", "_") or (
            setting.kind is Kind.NAMES and setting.env.endswith("S")
        ), setting.env


def test_each_variable_sets_its_setting() -> None:
    env = {
        "MESHPLANE_DATA_DIR": "/srv/mesh",
        "MESHPLANE_HOST": "127.0.0.9",
        "MESHPLANE_API_PORT": "9000",
        "MESHPLANE_XDS_PORT": "9001",
        "MESHPLANE_REGION": "eu-west-1",
        "MESHPLANE_ACCOUNT_ID": "123456789012",
        "MESHPLANE_LOG_LEVEL": "debug",
        "MESHPLANE_REQUIRE_AUTH": "yes",
        "MESHPLANE_TLS_ISSUE": "on",
        "MESHPLANE_TLS_NAMES": "a.example, b.example",
        "MESHPLANE_TRUST_DOMAIN": "corp.example",
        "MESHPLANE_CERT_LIFETIME": "2h",
        "MESHPLANE_CERT_ROTATE_AFTER": "0.25",
        "MESHPLANE_CA_PROPAGATION": "1m",
        "MESHPLANE_CA_OVERLAP": "3h",
    }
    loaded = Settings.load(env=env)
    assert loaded.store.data_dir == Path("/srv/mesh")
    assert (loaded.api.host, loaded.api.port) == ("127.0.0.9", 9000)
    assert (loaded.xds.host, loaded.xds.port) == ("127.0.0.9", 9001)
    assert (loaded.region, loaded.account_id, loaded.log_level) == (
        "eu-west-1",
        "123456789012",
        "debug",
    )
    assert loaded.auth is not None and loaded.auth.required
    assert loaded.tls is not None and loaded.tls.issue is not None
    assert {"a.example", "b.example"} <= set(loaded.tls.issue)
    assert loaded.ca.trust_domain == "corp.example"
    assert loaded.ca.cert_lifetime == timedelta(hours=2)
    assert loaded.ca.rotate_after == 0.25
    assert loaded.ca.ca_propagation == timedelta(minutes=1)
    assert loaded.ca.ca_overlap == timedelta(hours=3)
    # a flag wins over its variable
    assert Settings.load(env=env, api_port=9100).api.port == 9100


def test_defaults_apply_when_nothing_is_given() -> None:
    loaded = Settings.load(env={"XDG_DATA_HOME": "/xdg"})
    assert loaded.store.data_dir == Path("/xdg/meshplane")
    assert loaded.store.database_url is None
    assert (loaded.api.port, loaded.xds.port) == (8765, 18000)
    assert loaded.tls is None
    assert loaded.ca.ca_overlap is None


@pytest.mark.parametrize(
    ("variable", "text", "message"),
    [
        ("MESHPLANE_API_PORT", "http", "MESHPLANE_API_PORT"),
        ("MESHPLANE_API_PORT", "70000", "MESHPLANE_API_PORT: 70000 is not a port"),
        ("MESHPLANE_LOG_LEVEL", "loud", "MESHPLANE_LOG_LEVEL: 'loud' is not one of"),
        ("MESHPLANE_CERT_LIFETIME", "soon", "MESHPLANE_CERT_LIFETIME"),
        ("MESHPLANE_CERT_ROTATE_AFTER", "2", "MESHPLANE_CERT_ROTATE_AFTER"),
        ("MESHPLANE_ACCOUNT_ID", "12", "MESHPLANE_ACCOUNT_ID: '12' is not a 12-digit"),
    ],
)
def test_a_bad_variable_is_named(variable: str, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Settings.load(data_dir=Path("/d"), env={variable: text})


def test_an_unknown_keyword_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown settings: colour"):
        Settings.load(env={}, colour="blue")


def test_one_switch_parser() -> None:
    for text in ("1", "true", "YES", " on "):
        assert parse_bool(text)
    for text in (None, "", "0", "off", "no", "maybe"):
        assert not parse_bool(text)


def test_serve_refuses_a_bad_account_id_as_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["serve", "--data-dir", "/nonexistent", "--account-id", "1"])
    assert result.exit_code == 2
    assert "--account-id: '1' is not a 12-digit account ID" in result.output
