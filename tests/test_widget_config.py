"""The site owner's widget settings: validated in Config, read from the environment,
and carried inside the served widget.js (which stays small and cacheable)."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from livesupport.config import Config

from .conftest import PREFIX, SECRET_KEY, AppFactory, Client

WIDGET_GZIP_BUDGET = 15 * 1024  # bytes, gzip -9


def served_settings(body: bytes) -> dict[str, object]:
    found = re.search(rb"/\*@config\*/(\{.*?\});", body)
    assert found, "the served widget carries its settings"
    return json.loads(found.group(1))


def test_defaults_are_served_in_the_widget(app: Client) -> None:
    settings = served_settings(app.get(PREFIX + "/widget.js").body)
    assert settings == {
        "prefix": "/livesupport",
        "title": "",
        "greeting": "",
        "color": "#2557d6",
        "position": "right",
        "locale": "auto",
        "prechat": False,
    }


def test_the_site_owners_settings_are_served(make_app: AppFactory) -> None:
    client = Client(
        make_app(
            widget_title="Kettle </script> help",
            widget_greeting="Hello \u2028 there \u4f60\u597d",
            widget_color="#0a7",
            widget_position="left",
            widget_locale="zh-CN",
            widget_prechat=True,
        )
    )
    body = client.get(PREFIX + "/widget.js").body
    raw = re.search(rb"/\*@config\*/(\{.*?\});", body)
    assert raw and raw.group(1).isascii()  # JSON escapes: no setting can end the literal
    settings = served_settings(body)
    assert settings["title"] == "Kettle </script> help"
    assert settings["greeting"] == "Hello \u2028 there \u4f60\u597d"
    assert (settings["color"], settings["position"]) == ("#0a7", "left")
    assert (settings["locale"], settings["prechat"]) == ("zh-CN", True)


def test_settings_change_the_etag_and_304_still_works(make_app: AppFactory) -> None:
    plain = Client(make_app()).get(PREFIX + "/widget.js")
    styled = Client(make_app(widget_color="#000000"))
    first = styled.get(PREFIX + "/widget.js")
    assert first.headers["ETag"] != plain.headers["ETag"]
    styled.get(PREFIX + "/widget.js", headers={"If-None-Match": first.headers["ETag"]}, status=304)


def test_the_served_widget_is_under_15_kb_gzipped(app: Client) -> None:
    body = app.get(PREFIX + "/widget.js").body
    size = len(gzip.compress(body, compresslevel=9))
    assert size <= WIDGET_GZIP_BUDGET, f"widget.js is {size} bytes gzipped"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("widget_color", "red"),
        ("widget_color", "#12345"),
        ("widget_color", "#123;}body{x:y"),
        ("widget_position", "top"),
        ("widget_locale", "fr"),
        ("widget_title", "x" * 81),
        ("widget_greeting", "x" * 501),
        ("widget_prechat", "yes"),
    ],
)
def test_invalid_widget_settings_are_refused(setting: str, value: object) -> None:
    with pytest.raises(ValueError, match=setting):
        Config(secret_key=SECRET_KEY, **{setting: value})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("1", True), ("Yes", True), ("on", True), ("false", False), ("0", False),
     ("no", False), ("", False)],
)  # fmt: skip
def test_boolean_settings_from_the_environment(raw: str, expected: bool) -> None:
    environ = {"LIVESUPPORT_SECRET_KEY": SECRET_KEY, "LIVESUPPORT_WIDGET_PRECHAT": raw}
    assert Config.from_env(environ).widget_prechat is expected


def test_widget_settings_from_the_environment() -> None:
    environ = {
        "LIVESUPPORT_SECRET_KEY": SECRET_KEY,
        "LIVESUPPORT_WIDGET_TITLE": "Help",
        "LIVESUPPORT_WIDGET_COLOR": "#112233",
        "LIVESUPPORT_WIDGET_POSITION": "left",
        "LIVESUPPORT_WIDGET_LOCALE": "en",
    }
    config = Config.from_env(environ)
    assert (config.widget_title, config.widget_color) == ("Help", "#112233")
    assert (config.widget_position, config.widget_locale) == ("left", "en")
    with pytest.raises(ValueError, match="LIVESUPPORT_WIDGET_PRECHAT"):
        Config.from_env({**environ, "LIVESUPPORT_WIDGET_PRECHAT": "maybe"})
