"""Builds frozen dataclasses from plain mappings, failing with the dotted key that is wrong."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or impossible; names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config key '{key}': {message}")
        self.key = key
        self.detail = message


def build(cls: type[T], data: Any, key: str) -> T:
    """Build dataclass `cls` from `data`; defaults fill omitted fields, unknown keys are rejected."""
    if not isinstance(data, Mapping):
        raise ConfigError(key, f"expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    removed: Mapping[str, str] = getattr(cls, "REMOVED_KEYS", {})
    for name in sorted(set(data) & set(removed)):
        raise ConfigError(f"{key}.{name}", removed[name])
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(fields))})")
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, field in fields.items():
        if not field.init:
            continue
        if name in data:
            values[name] = _coerce(hints[name], data[name], f"{key}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}.{name}", "is required")
    try:
        return cls(**values)
    except ConfigError as error:
        # Checks inside a dataclass name the field relative to it; prefix where it sits.
        raise ConfigError(f"{key}.{error.key}", error.detail) from None
    except (TypeError, ValueError) as error:
        raise ConfigError(key, str(error)) from error


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return _coerce(inner[0], value, key)
    if origin is typing.Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(key, f"must be one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"expected a list, got {type(value).__name__}")
        item_hint = get_args(hint)[0]
        return tuple(_coerce(item_hint, item, f"{key}[{i}]") for i, item in enumerate(value))
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected an object, got {type(value).__name__}")
        value_hint = get_args(hint)[1] if get_args(hint) else Any
        return types.MappingProxyType({str(k): _coerce(value_hint, v, f"{key}.{k}") for k, v in value.items()})
    return _scalar(hint, value, key)


def _scalar(hint: Any, value: Any, key: str) -> Any:
    if hint is Any:
        return value
    # bool is a subclass of int: reject True where a number is expected, and 1 where a flag is.
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(key, f"expected a non-empty string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} at {key}")


def check(condition: bool, key: str, message: str) -> None:
    """Raise ConfigError naming `key` unless `condition` holds."""
    if not condition:
        raise ConfigError(key, message)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `override` into `base`, recursing into nested objects."""
    merged = dict(base)
    for name, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = deep_merge(merged[name], value)
        else:
            merged[name] = value
    return merged
