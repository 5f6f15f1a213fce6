"""docs/settings.md is generated from the typed config: a test fails when the page and the config disagree."""

from __future__ import annotations

from pathlib import Path

from lstm_ae.config import Config
from lstm_ae.settings_reference import render

ROOT = Path(__file__).parents[1]


def test_the_settings_page_is_what_the_config_generates() -> None:
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert page == render(ROOT / "params.yaml"), "docs/settings.md is stale: run `make docs`"


def test_every_key_has_a_description_and_a_row() -> None:
    page = render(ROOT / "params.yaml")

    def keys(model: type, prefix: str = "") -> list[str]:
        found = []
        for name, field in model.model_fields.items():
            annotation = field.annotation
            nested = isinstance(annotation, type) and hasattr(annotation, "model_fields")
            if nested and "low" not in annotation.model_fields:  # a range is one key
                found += keys(annotation, f"{prefix}{name}.")
            else:
                assert field.description, f"{prefix}{name} has no description"
                found.append(f"{prefix}{name}")
        return found

    for key in keys(Config):
        assert f"| `{key}` |" in page, key
