"""``cortex-resnet schema``: the reference of every model, experiment and stimulus field.

Generated from the pydantic models themselves (names, types, defaults, bounds),
with meanings and units from ``Field(description=...)`` or
:mod:`cortex_resnet.cli.schema_fields`. ``docs/schema.md`` is this command's
output (``cortex-resnet schema all > docs/schema.md``; a test keeps it in sync).
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types as at
import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from cortex_resnet.cli._common import emit_json, handle_errors
from cortex_resnet.cli.schema_fields import MEANINGS, SUFFIX_UNITS, UNITS
from cortex_resnet.errors import SpecError
from cortex_resnet.model.spec import SAFE_NAME, CircuitSpec, StimulusSpec
from cortex_resnet.training.experiment import ExperimentSpec

__all__ = ["register", "ROOTS", "FieldRow", "field_rows", "render_markdown", "render_document", "json_schema"]

ROOTS: dict[str, type[BaseModel]] = {"model": CircuitSpec, "experiment": ExperimentSpec, "stimulus": StimulusSpec}
TITLES = {
    "model": "Circuit model files (`models/*.toml`, `cortex-resnet simulate`)",
    "experiment": "Experiment files (`experiments/*.toml`, `cortex-resnet train`)",
    "stimulus": "Stimuli (`--stimulus KIND:key=value,...`, `simulation.stimulus`)",
}


@dataclass(frozen=True)
class FieldRow:
    """One documented field: dotted name (``connectivity.J_EE``), type, unit, default, allowed, meaning."""

    name: str
    type: str
    unit: str
    default: str
    allowed: str
    meaning: str

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"FieldRow({self.name!r}: {self.type[:30]}, unit {self.unit!r}, default {self.default[:20]!r})"


def _members(ann: Any) -> list[Any]:
    if get_origin(ann) is typing.Annotated:
        return _members(get_args(ann)[0])
    if get_origin(ann) in (Union, types.UnionType):
        return [m for a in get_args(ann) for m in _members(a)]
    return [ann]


def _type_name(ann: Any) -> str:
    """TOML-facing type words: integer, number, boolean, string, list of ..., table."""
    words = {int: "integer", float: "number", bool: "boolean", str: "string", Any: "any"}
    parts = []
    for m in _members(ann):
        origin = get_origin(m)
        if m is type(None):
            continue
        if m in words:
            parts.append(words[m])
        elif origin is Literal:
            parts.append("string")
        elif origin in (list, tuple):
            args = [a for a in get_args(m) if a is not Ellipsis]
            if origin is tuple and Ellipsis not in get_args(m) and args:
                parts.append("[" + ", ".join(_type_name(a) for a in args) + "]")
            else:
                parts.append("list of " + (" or ".join(sorted({_type_name(a) for a in args})) or "any"))
        elif origin is dict or (isinstance(m, type) and issubclass(m, BaseModel)):
            parts.append("table")
        else:
            parts.append(getattr(m, "__name__", str(m)))
    text = " or ".join(dict.fromkeys(parts))
    return text + (" (optional)" if type(None) in _members(ann) else "")


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_fmt(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):  # 1.0 stays a float in TOML terms; 1e+06, 0.0001 as %g
        return f"{value:.1f}" if value.is_integer() and abs(value) < 1e5 else f"{value:g}"
    return str(value)


def _default(f: FieldInfo) -> str:
    if f.is_required():
        return "required"
    value = f.default_factory() if f.default_factory is not None else f.default
    if value is None:
        return "none (omit)"
    if isinstance(value, BaseModel):
        return "(table)"
    return _fmt(value)


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _bounds(f: FieldInfo) -> str:
    """``0 <= x <= 1``, ``x > 0``, ``x <= 10`` from the field's ge/gt/le/lt."""
    lo = hi = ""
    for m in f.metadata:
        for attr, op in (("ge", "<="), ("gt", "<"), ("le", "<="), ("lt", "<")):
            value = getattr(m, attr, None) if isinstance(m, (at.Ge, at.Gt, at.Le, at.Lt)) else None
            if value is not None and attr in ("ge", "gt"):
                lo = f"{_num(value)} {op} "
            elif value is not None:
                hi = f" {op} {_num(value)}"
    if lo and not hi:
        return "x " + {"<=": ">=", "<": ">"}[lo.split()[1]] + " " + lo.split()[0]
    return f"{lo}x{hi}" if lo or hi else ""


def _allowed(f: FieldInfo) -> str:
    """Choices, bounds, lengths: ``"dense", "sparse"``, ``0 <= x <= 1``, ``at most 200 characters``."""
    choices = [a for m in _members(f.annotation) if get_origin(m) is Literal for a in get_args(m)]
    out = [", ".join(_fmt(c) for c in choices)] if choices else []
    out += [_bounds(f)] if _bounds(f) else []
    for m in f.metadata:
        if isinstance(m, at.MaxLen):
            out.append(f"at most {m.max_length:,} {'characters' if _members(f.annotation)[0] is str else 'entries'}")
        elif getattr(m, "pattern", None) == SAFE_NAME:
            out.append("letters, digits, _ . - (not starting with .)")
    return "; ".join(out) or "any"


def _unit(cls: type, name: str) -> str:
    key = f"{cls.__name__}.{name}"
    if key in UNITS:
        return UNITS[key]
    return next((u for suffix, u in SUFFIX_UNITS.items() if name.endswith(suffix)), "")


def _meaning(cls: type, name: str, f: FieldInfo | None) -> str:
    if f is not None and f.description:
        return f.description
    return MEANINGS.get(f"{cls.__name__}.{name}", "(undocumented)")


def _tables(ann: Any) -> list[type[BaseModel]]:
    return [m for m in _members(ann) if isinstance(m, type) and issubclass(m, BaseModel)]


def field_rows(cls: type[BaseModel], prefix: str = "") -> list[FieldRow]:
    """Every field of ``cls``, depth first, tables before their fields; a tagged union's
    variants in turn (their rows say which ``kind`` they belong to)."""
    rows: list[FieldRow] = []
    for name, f in cls.model_fields.items():
        if f.exclude:
            continue
        dotted, tables = f"{prefix}{name}", _tables(f.annotation)
        rows.append(FieldRow(dotted, _type_name(f.annotation), _unit(cls, name), _default(f), _allowed(f),
                             _meaning(cls, name, f)))
        rows += _map_rows(cls, name, f.annotation, dotted)
        for sub in tables:
            kind = sub.model_fields.get("kind") if len(tables) > 1 else None
            sub_rows = field_rows(sub, dotted + ".")
            if kind is not None:
                tag = f"[{name}.kind = {_fmt(get_args(kind.annotation)[0])}] "
                sub_rows = [FieldRow(r.name, r.type, r.unit, r.default, r.allowed, tag + r.meaning)
                            for r in sub_rows]
            rows += sub_rows
    named = getattr(cls, "EXTRA_MODEL", None)
    if named is not None:  # tables by name: [populations.NAME], [spiking.populations.NAME]
        rows.append(FieldRow(f"{prefix}<NAME>", "table", "", "", "a population name",
                             _meaning(cls, "<NAME>", None)))
        rows += field_rows(named, f"{prefix}<NAME>.")
    elif cls.model_config.get("extra") == "allow":  # free parameters (a transfer function's)
        rows.append(FieldRow(f"{prefix}<parameter>", "number", "", "per function", "finite",
                             _meaning(cls, "<parameter>", None)))
    return rows


def _map_rows(cls: type, name: str, ann: Any, dotted: str) -> list[FieldRow]:
    """Rows of a table keyed by population names: ``dict[str, X]`` as ``NAME.<NAME>``, a table of
    tables ``dict[str, dict[str, X]]`` as ``NAME.<POST>.<PRE>`` (connectivity pathways)."""
    maps = [m for m in _members(ann) if get_origin(m) is dict]
    if not maps or not cls.__module__.startswith("cortex_resnet.model."):  # keyed by population only there
        return []
    value = get_args(maps[0])[1]
    if value is Any:  # free parameters (a dataset's params): documented by their owner
        return []
    inner = [m for m in _members(value) if get_origin(m) is dict]
    keys, value = (["<POST>", "<PRE>"], get_args(inner[0])[1]) if inner else (["<NAME>"], value)
    key = f"{dotted}.{'.'.join(keys)}"
    tables = _tables(value)
    rows = [FieldRow(key, _type_name(value), _unit(cls, name), "", "population names",
                     _meaning(cls, f"{name}.{'.'.join(keys)}", None))]
    if inner:  # the table of one post population
        rows.insert(0, FieldRow(f"{dotted}.<POST>", "table", "", "", "a population name",
                                _meaning(cls, f"{name}.<POST>", None)))
    for sub in tables:
        rows += field_rows(sub, key + ".")
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "–"


def render_markdown(kind: str) -> str:
    """A Markdown section: heading, one table row per field."""
    rows = field_rows(ROOTS[kind])
    lines = [f"## {TITLES[kind]}", "", f"`cortex-resnet schema {kind}` ({len(rows)} fields; JSON Schema: "
             f"`cortex-resnet schema {kind} --json`).", "",
             "| field | type | unit | default | allowed | meaning |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join([f"`{r.name}`", _cell(r.type), _cell(r.unit), _cell(f"`{r.default}`"
                     if r.default not in ("required", "(table)", "none (omit)", "per function") else r.default),
                     _cell(r.allowed), _cell(r.meaning)]) + " |")
    return "\n".join(lines) + "\n"


INTRO = """# File formats: every field

<!-- generated by `cortex-resnet schema all > docs/schema.md`; tests/cli/test_schema.py keeps it in sync -->

Every model, experiment and stimulus field with its type, unit, default, allowed values
and meaning, generated from the validating pydantic models. Unknown keys are refused
(with a "did you mean" hint and a link here). Units: times in ms, frequencies and spike
rates in Hz, potentials in mV; the rate model's rates and inputs are in *rate units*
(`spiking.rate_unit_hz` Hz each). Dotted names are TOML tables: `connectivity.J_EE` is
`J_EE` in `[connectivity]`; `populations.E.transfer.name` is
`transfer = {name = "relu"}` in `[populations.E]`. `x` in the allowed column is the value.
"""


def render_document() -> str:
    """docs/schema.md: the three references in one page."""
    return INTRO + "".join("\n" + render_markdown(kind) for kind in ROOTS)


def _describe_defs(schema: dict[str, Any], classes: dict[str, type[BaseModel]]) -> dict[str, Any]:
    """Add the meanings (with units) to JSON Schema properties that have no description."""
    for title, props in [(schema.get("title"), schema.get("properties", {}))] + [
            (k, d.get("properties", {})) for k, d in schema.get("$defs", {}).items()]:
        cls = classes.get(title)
        for name, prop in props.items():
            if cls is not None and "description" not in prop:
                unit = _unit(cls, name)
                prop["description"] = _meaning(cls, name, None) + (f" Unit: {unit}." if unit else "")
    return schema


def _classes(cls: type[BaseModel], seen: dict[str, type[BaseModel]]) -> dict[str, type[BaseModel]]:
    seen[cls.__name__] = cls
    subs = [sub for f in cls.model_fields.values() for sub in _tables(f.annotation) + _map_tables(f.annotation)]
    if getattr(cls, "EXTRA_MODEL", None) is not None:  # tables by name
        subs.append(cls.EXTRA_MODEL)
    for sub in subs:
        if sub.__name__ not in seen:
            _classes(sub, seen)
    return seen


def _map_tables(ann: Any) -> list[type[BaseModel]]:
    """Models held in (nested) ``dict[str, ...]`` fields."""
    out = []
    for m in _members(ann):
        if get_origin(m) is dict:
            value = get_args(m)[1]
            out += _tables(value) + _map_tables(value)
    return out


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema (validation mode) of ``kind``, with meanings and units as descriptions."""
    cls = ROOTS[kind]
    return _describe_defs(cls.model_json_schema(), _classes(cls, {}))


def register(app: typer.Typer) -> None:
    @app.command(help="Print the reference of every field of a file format: model, experiment, stimulus "
                      "or all (Markdown tables: dotted name, type, unit, default, allowed, meaning; "
                      "docs/schema.md is `schema all`). --json prints the JSON Schema instead.\n\n"
                      "Example:\n\n  cortex-resnet schema model\n\n  cortex-resnet schema experiment --json")
    @handle_errors
    def schema(
        kind: str = typer.Argument(..., help="model, experiment, stimulus or all."),
        json_out: bool = typer.Option(False, "--json", help="Print the JSON Schema (for editors and validators)."),
    ) -> None:
        if kind not in (*ROOTS, "all"):
            raise SpecError("KIND", kind, "one of " + ", ".join([*ROOTS, "all"]))
        if json_out:
            emit_json(json_schema(kind) if kind != "all" else {k: json_schema(k) for k in ROOTS})
        else:
            typer.echo(render_document() if kind == "all" else render_markdown(kind), nl=False)
