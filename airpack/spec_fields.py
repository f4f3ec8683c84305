"""The field readers of the spec parser: each checks one value and names its key path in the error, with the
closest valid word for a typo. Shared by :mod:`airpack.spec` and the parsers of its sections."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from airpack.errors import SpecError


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (plain PyYAML silently keeps the last one)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        mark = key_node.start_mark
        try:
            duplicate = key in seen
        except TypeError:  # a list or mapping used as a key (YAML's '? [a, b]'): unhashable
            raise SpecError(f"line {mark.line + 1}: a key must be a plain word, not {typename(key)}") from None
        if duplicate:
            raise SpecError(f"line {mark.line + 1}: duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def fail(where: str, what: str) -> SpecError:
    return SpecError(f"{where}: {what}")


def suggest(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; expected one of: {', '.join(options)}"


def check_keys(where: str, data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in data:
        if not isinstance(key, str):
            raise fail(where or "spec", f"keys must be strings, got {key!r}")
        if key not in allowed:
            path = f"{where}.{key}" if where else key
            raise fail(path, "unknown key" + suggest(key, allowed))


def mapping(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise fail(where, f"must be a mapping, got {typename(value)}")
    return value


def typename(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "nothing (null)"}.get(type(value), type(value).__name__)


def string(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(where, f"must be a non-empty string, got {typename(value)}")
    return value


def integer(where: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(where, f"must be an integer, got {typename(value)}")
    if value < minimum:
        raise fail(where, f"must be >= {minimum}, got {value}")
    return value


def boolean(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise fail(where, f"must be true or false, got {typename(value)}")
    return value


def str_list(where: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise fail(where, f"must be a list of strings, got {typename(value)}")
    return tuple(string(f"{where}[{i}]", v) for i, v in enumerate(value))


def choice(where: str, value: Any, options: tuple[str, ...]) -> str:
    text = string(where, value)
    if text not in options:
        raise fail(where, f"{text!r} is not valid" + suggest(text, options))
    return text


def opt(data: Mapping[str, Any], key: str, where: str, conv: Callable[[str, Any], Any]) -> Any:
    return conv(f"{where}.{key}", data[key]) if key in data else None
