"""The settings reference (docs/settings.md), generated from the typed config's field descriptions
so that the page, params.yaml and the validation can never tell three different stories.

Regenerate with `make docs` (``python -m lstm_ae.settings_reference > docs/settings.md``);
tests/test_reference.py fails when the page and the config disagree.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
import pandas
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from lstm_ae.config import Config, presets_dir

HEADER = """\
# Settings reference

Every key of the settings, what it means and what it accepts. You edit them in `conf/config.yaml`;
`dvc exp run` composes `params.yaml` from it, a [preset](experiments.md#presets-recipes-as-files)
and your `-S key=value`, and every stage reads `params.yaml`. A bad value stops a stage before any
work with one line that names the key. Change a key for one experiment with
`dvc exp run -S train.max_epochs=20`; run a recipe with `dvc exp run -S preset=report`.

<!-- Generated from src/lstm_ae/config.py by `make docs`; edit the field descriptions there. -->
"""

BOUNDS = (
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "<="),
    (annotated_types.Lt, "lt", "<"),
)


def _bounds(metadata: list[Any]) -> str:
    """'>= 1, <= 100' from a field's annotated-types constraints."""
    parts = []
    for item in metadata:
        for kind, attribute, sign in BOUNDS:
            if isinstance(item, kind):
                parts.append(f"{sign} {getattr(item, attribute):,}".replace(",", " "))
    return ", ".join(parts)


def _kind(annotation: Any) -> str:
    """A short human name for a field's type: `a` | `b`, integer, list of ..., or null."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *metadata = typing.get_args(annotation)
        bounds = _bounds(metadata)
        return _kind(inner) + (f" ({bounds})" if bounds else "")
    if origin is Literal:
        return " \\| ".join(f"`{value}`" for value in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        options = [_kind(arg) for arg in typing.get_args(annotation) if arg is not type(None)]
        return " \\| ".join(options) + " or `null`"
    if origin is tuple:
        return f"list of {_kind(typing.get_args(annotation)[0])}"
    return {bool: "`true` \\| `false`", int: "integer", float: "number", str: "text"}.get(
        annotation, "mapping"
    )


def _allowed(field: FieldInfo) -> str:
    kind = _kind(field.annotation)
    bounds = _bounds(field.metadata)
    return kind + (f" ({bounds})" if bounds else "")


def _value(value: Any) -> str:
    return (
        "`"
        + yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()
        + "`"
    )


def _rows(model: type[BaseModel], values: dict[str, Any], prefix: str) -> list[str]:
    """One table row per leaf key; a mapping inside a section (tune.search, model.restorer) is
    flattened with dots, top-level sections are left to their own tables."""
    rows = []
    for name, field in model.model_fields.items():
        key, value = f"{prefix}{name}", values.get(name, field.default)
        if _is_section(field) and "low" not in field.annotation.model_fields:
            if prefix:
                if isinstance(value, BaseModel):
                    value = value.model_dump(mode="json")
                rows += _rows(field.annotation, value or {}, f"{key}.")
            continue  # a top-level section: render gives it its own table
        if _is_section(field):  # a range such as tune.search.learning_rate: {low, high}
            accepts = f"`low` < `high`, each a {_allowed(field.annotation.model_fields['low'])}"
            rows.append(f"| `{key}` | {_value(value)} | {accepts} | {field.description} |")
            continue
        rows.append(f"| `{key}` | {_value(value)} | {_allowed(field)} | {field.description} |")
    return rows


def presets_table(params: Path) -> list[str]:
    """What each file in conf/preset/ lays over conf/config.yaml (its own name as `preset` aside)."""
    lines = ["## Presets", "", "| preset | sets |", "| --- | --- |"]
    for path in sorted(presets_dir(params).glob("*.yaml")):
        overlay = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        overlay.pop("preset", None)
        keys = pandas.json_normalize(overlay, sep=".").to_dict(orient="records")[0] if overlay else {}
        sets = (
            ", ".join(f"`{key}: {_value(value)[1:-1]}`" for key, value in keys.items())
            or "nothing: conf/config.yaml as it is"
        )
        lines.append(f"| [`{path.stem}`](../conf/preset/{path.name}) | {sets} |")
    return lines


def render(params: Path = Path("params.yaml")) -> str:
    """The whole page for this params.yaml (its values are the "params.yaml" column)."""
    raw = yaml.safe_load(Path(params).read_text(encoding="utf-8"))
    lines = [HEADER]
    lines += ["## Top level", "", "| key | params.yaml | accepts | meaning |", "| --- | --- | --- | --- |"]
    lines += _rows(Config, raw, "")
    for name, field in Config.model_fields.items():
        if _is_section(field):
            section = field.annotation
            lines += ["", f"## {name}", ""]
            if section.__doc__:
                lines += [section.__doc__.strip().splitlines()[0], ""]
            lines += ["| key | params.yaml | accepts | meaning |", "| --- | --- | --- | --- |"]
            lines += _rows(section, raw.get(name, {}), f"{name}.")
    lines += ["", *presets_table(params)]
    return "\n".join(lines) + "\n"


def _is_section(field: FieldInfo) -> bool:
    return isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)


if __name__ == "__main__":
    sys.stdout.write(render(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("params.yaml")))
