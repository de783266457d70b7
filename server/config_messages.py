"""Turning pydantic's validation errors into messages a person can act on: the key path
(``routes[1].approverz``), what was expected, and for an unknown key the closest valid one."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel


def closest(word: str, choices: typing.Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def describe(err: Any, root: type[BaseModel]) -> str:
    """One validation error of ``root`` (the whole configuration) as a line for the user."""
    loc = tuple(p for p in err["loc"] if p not in _UNION_TAGS)
    key = _key_path(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        valid = _valid_keys(root, loc[:-1])
        hint = closest(str(loc[-1]), valid)
        fix = f"did you mean {hint!r}?" if hint else f"valid keys here: {', '.join(valid)}"
        return f"{key}: unknown key; {fix}"
    if kind == "missing":
        return f"{key}: required key is missing"
    given = err.get("input")
    shown = f" (got {given!r})" if given is not None and not isinstance(given, dict | list) else ""
    return f"{key}: {err['msg'].removeprefix('Value error, ')}{shown}"


_UNION_TAGS = {"str", "int", "float", "bool", "list[str]", "list[...]", "function-before[<lambda>(), float]"}


def _valid_keys(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the model at ``loc`` accepts, by walking the annotations from ``root``."""
    tp: Any = root
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return []
    model = _as_model(tp)
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items() if n != "source"]


def _strip(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = next((a for a in args if _as_model(a) or typing.get_origin(a) in (list, dict)), args[0])
        else:
            return tp


def _as_model(tp: Any) -> type[BaseModel] | None:
    tp = _strip(tp) if typing.get_origin(tp) else tp
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _step(tp: Any, part: int | str) -> Any:
    tp = _strip(tp)
    origin = typing.get_origin(tp)
    if origin is list and isinstance(part, int):
        return typing.get_args(tp)[0]
    if origin is dict:
        return typing.get_args(tp)[1]
    model = _as_model(tp)
    if model is not None and isinstance(part, str):
        for name, field in model.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
    return None
