"""Typed, frozen views of ``params.yaml``.

``params.yaml`` is the only source of configuration. Each stage reads the sections it needs into
frozen dataclasses declared in :mod:`tgmatl.config`; unknown keys, missing keys, wrong types and
out-of-range values are rejected with a :class:`ParamsError` naming the full dotted key.

Constraints are attached to dataclass fields through :func:`spec`::

    @dataclass(frozen=True)
    class SamplingParams:
        top_pct: float = spec(gt=0.0, le=1.0)

A class may define ``not_applicable(raw) -> {field: reason}``: those fields must be absent from
``raw`` (an error naming the key and the reason otherwise) and are set to None.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ParamsError(ValueError):
    """A configuration value is missing, unknown, mistyped or out of range."""


def spec(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    min_len: int | None = None,
    help: str = "",  # noqa: A002 - mirrors argparse's naming
) -> Any:
    """A required dataclass field carrying range constraints (checked by :func:`parse_section`)."""
    return dataclasses.field(
        metadata={"ge": ge, "gt": gt, "le": le, "lt": lt, "min_len": min_len, "help": help}
    )


def read_yaml_mapping(path: str | Path, what: str, expected: str,
                      nonempty: bool = False) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (``nonempty``: with at least one key); errors
    name the file (``what``: the kind of file, ``expected``: what its top level should be)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: {what} not found") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or (nonempty and not raw):
        raise ParamsError(f"{path}: {expected}")
    return raw


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read the YAML file; a file that is not a mapping is an error naming the file."""
    return read_yaml_mapping(path, "params file", "top level must be a mapping of sections")


def parse_section(cls: type[T], raw: Any, key: str) -> T:
    """Build the frozen dataclass ``cls`` from the mapping ``raw`` found at dotted ``key``."""
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{key}: expected a mapping, got {type(raw).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        names = ", ".join(f"{key}.{u}" for u in unknown)
        raise ParamsError(f"unknown key(s) {names}; allowed: {', '.join(sorted(fields))}")
    # fields that mean nothing here (a precomputed backbone's image_size): absent, read as None
    hook = getattr(cls, "not_applicable", None)
    skipped: Mapping[str, str] = hook(raw) if hook is not None else {}
    values = {}
    for name, field in fields.items():
        full = f"{key}.{name}"
        if name in skipped:
            if name in raw:
                raise ParamsError(f"{full}: not used with {skipped[name]}; remove the key")
            values[name] = None
            continue
        if name not in raw:
            raise ParamsError(f"{full}: missing (required)")
        value = _coerce(raw[name], hints[name], full)
        _check_range(value, field.metadata, full)
        values[name] = value
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(key)  # cross-field rules; raise ParamsError naming the key
    return obj


def read_section(cls: type[T], params: Mapping[str, Any], key: str) -> T:
    """Parse ``params[key]`` (a dotted key reaches nested sections) into ``cls``."""
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ParamsError(f"{key}: section missing from params")
        node = node[part]
    return parse_section(cls, node, key)


def read_seed(params: Mapping[str, Any]) -> int:
    seed = params.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParamsError(f"seed: expected a non-negative integer, got {seed!r}")
    return seed


def _check_range(value: Any, meta: Mapping[str, Any], key: str) -> None:
    if not meta:
        return
    items = value if isinstance(value, tuple) else (value,)
    if meta.get("min_len") is not None and isinstance(value, tuple) and (
        len(value) < meta["min_len"]
    ):
        raise ParamsError(f"{key}: needs at least {meta['min_len']} item(s), got {len(value)}")
    for v in items:
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        if meta.get("ge") is not None and not v >= meta["ge"]:
            raise ParamsError(f"{key}: {v} out of range, must be >= {meta['ge']}")
        if meta.get("gt") is not None and not v > meta["gt"]:
            raise ParamsError(f"{key}: {v} out of range, must be > {meta['gt']}")
        if meta.get("le") is not None and not v <= meta["le"]:
            raise ParamsError(f"{key}: {v} out of range, must be <= {meta['le']}")
        if meta.get("lt") is not None and not v < meta["lt"]:
            raise ParamsError(f"{key}: {v} out of range, must be < {meta['lt']}")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            opts = "|".join(map(str, choices))
            raise ParamsError(f"{key}: {value!r} is not one of {opts}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ParamsError as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise ParamsError(errors[0])
        reasons = "; ".join(e.removeprefix(f"{key}: ") for e in errors)
        raise ParamsError(f"{key}: {value!r} is not accepted ({reasons})")
    if dataclasses.is_dataclass(tp):
        return parse_section(tp, value, key)
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list | tuple):
            raise ParamsError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ParamsError(f"{key}: expected {len(args)} items, got {len(value)}")
        pairs = enumerate(zip(args, value, strict=True))
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (a, v) in pairs)
    if origin in (dict, Mapping):
        kt, vt = get_args(tp)
        if not isinstance(value, Mapping):
            raise ParamsError(f"{key}: expected a mapping, got {value!r}")
        return types.MappingProxyType(
            {_coerce(k, kt, key): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
        )
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamsError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{key}: unsupported params type {tp!r}")  # a bug in a section class
