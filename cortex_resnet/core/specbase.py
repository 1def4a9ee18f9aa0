"""What every spec model (model, experiment, stimulus, spiking) refuses, in one place.

* non-finite numbers (``nan``, ``inf``) in any float field;
* a boolean or a string where a number goes (``tau_ms = true``, ``tau_ms = "20.0"``);
  integers are still accepted for floats (``tau_ms = 20``);
* free text longer than :data:`MAX_TEXT` characters (``description`` is copied into
  every output file);
* tables or arrays nested deeper than :data:`MAX_DEPTH` levels;
* unknown keys, with a "did you mean" suggestion and the list of valid keys.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator

from cortex_resnet.core.summary import short_repr
from cortex_resnet.errors import SCHEMA_DOC, SpecError

__all__ = ["Frozen", "MAX_TEXT", "MAX_DEPTH", "MAX_LIST", "check_depth", "unknown_key_message",
           "NUMBER_ALLOWED"]

MAX_TEXT = 10_000  # characters of any string field (a description, a reference, a path)
MAX_DEPTH = 32  # nesting levels of tables/arrays; the deepest real spec has ~7
MAX_LIST = 1_000  # entries of a free list (references)
NUMBER_ALLOWED = "a number (write 20.0, not \"20.0\" or true)"


def _members(ann: Any) -> list[Any]:
    """The alternatives of a (possibly Optional/Annotated) annotation."""
    origin = get_origin(ann)
    if origin is typing.Annotated:
        return _members(get_args(ann)[0])
    if origin in (Union, types.UnionType):
        return [m for a in get_args(ann) for m in _members(a)]
    return [ann]


def _accepts_text_or_bool(m: Any) -> bool:
    return m in (bool, str, Any) or get_origin(m) is Literal or get_origin(m) is dict


def _not_a_number(ann: Any, value: Any) -> bool:
    """Whether ``value`` is a bool/str (or holds one) where ``ann`` wants a number."""
    members = _members(ann)
    if isinstance(value, (bool, str)):
        if any(_accepts_text_or_bool(m) for m in members):
            return False
        return any(m in (int, float) for m in members)
    if isinstance(value, (list, tuple)):
        for m in members:
            if get_origin(m) in (list, tuple):
                elts = [a for a in get_args(m) if a is not Ellipsis]
                elt = Union[tuple(elts)] if elts else Any
                return any(_not_a_number(elt, x) for x in value)
    return False


class Frozen(BaseModel):
    """Base of every spec table: immutable, no unknown keys, finite strict numbers, bounded text."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, str_max_length=MAX_TEXT)

    @model_validator(mode="before")
    @classmethod
    def _strict_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                if name in data and _not_a_number(field.annotation, data[name]):
                    raise SpecError(name, data[name], NUMBER_ALLOWED)
        return data

    def __repr__(self) -> str:
        """One line: the table's kind and its fields, arrays by shape, cut at 160 characters
        (``model_dump()`` has every value)."""
        return short_repr(self)


def check_depth(data: Any, source: str | None = None, limit: int = MAX_DEPTH) -> None:
    """Refuse tables/arrays nested more than ``limit`` levels (iteratively: no recursion)."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(data, ())]
    while stack:
        node, path = stack.pop()
        if len(path) > limit:
            shown = ".".join(path[:4]) + ".…"
            raise SpecError(shown, f"nested more than {limit} levels deep",
                            f"tables and arrays nested at most {limit} levels", source=source)
        if isinstance(node, dict):
            stack.extend((v, path + (str(k),)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, path + (str(i),)) for i, v in enumerate(node))


def _walk(root: type[BaseModel], parts: list[str]) -> tuple[list[str], type[BaseModel] | None]:
    """Follow ``parts`` through the spec models: the parts that are field names (pydantic's
    discriminator tags of tagged unions dropped) and the model class reached (None when the
    path leaves the models or stays ambiguous)."""
    names: list[str] = []
    cands: list[type[BaseModel]] = [root]
    for p in parts:
        if len(cands) > 1:
            tagged = [c for c in cands if "kind" in c.model_fields
                      and p in get_args(c.model_fields["kind"].annotation)]
            if tagged:
                cands = tagged
                continue
        names.append(p)
        field = cands[0].model_fields.get(p) if len(cands) == 1 else None
        extra = getattr(cands[0], "EXTRA_MODEL", None) if len(cands) == 1 and field is None else None
        cands = ([m for m in _members(field.annotation) if inspect.isclass(m) and issubclass(m, BaseModel)]
                 if field is not None else [extra] if extra is not None else [])
    return names, (cands[0] if len(cands) == 1 else None)


def unknown_key_message(root: type[BaseModel] | None, loc: list[str]) -> str:
    """"unknown field; did you mean 'J_EE'? valid keys of [connectivity]: ..." for the key at ``loc``."""
    cls = _walk(root, loc[:-1])[1] if root is not None else None
    if cls is None:
        return f"unknown field (check the spelling; {SCHEMA_DOC})"
    valid = [k for k, f in cls.model_fields.items() if not f.exclude]
    close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    shown = strip_tags(root, loc[:-1])
    where = f" of [{'.'.join(shown)}]" if shown else ""
    return f"unknown field; {hint}valid keys{where}: {', '.join(valid)} ({SCHEMA_DOC})"


def strip_tags(root: type[BaseModel] | None, parts: list[str]) -> list[str]:
    """``loc`` without pydantic's discriminator tags (``model.circuit.steps`` -> ``model.steps``)."""
    return parts if root is None else _walk(root, parts)[0]


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """The one dotted ``replace``: ``data["a"]["b"] = value`` for ``key = "a.b"``.

    Raises
    ------
    KeyError
        A table on the way (``a``) is missing or not a table; the spec's ``replace`` says which
        field in its own words.
    """
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            raise KeyError(key)
        node = node[p]
    node[parts[-1]] = value
