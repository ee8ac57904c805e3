"""One registry per pluggable stage: models and stores are chosen by name, never by ``if`` chains.

Implementations register themselves with a decorator; the registry imports the modules that
hold the built-in implementations lazily, so that optional extras (torch) are only imported
when the implementation that needs them is asked for.

Options arrive as text from a command line (``--detector-option min_area=0.01``); they are
converted once, here, by the types the implementation's signature declares, so that
constructors take typed values only.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Callable, Generic, Mapping, TypeVar, Union

from fashion_search.errors import UnknownComponentError, UsageError

T = TypeVar("T")
# The annotation of options that name a file: given on a command line, they are made absolute,
# so that an index records a path that still holds when searched from another folder.
PathLike = Union[str, os.PathLike]
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _parse_value(text: str, annotation: Any, key: str) -> Any:
    """``text`` as the type ``annotation`` names (``Optional[X]`` as ``X``)."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if set(members) == {str, os.PathLike}:
            return str(Path(text).expanduser().resolve())
        # The first member that parses wins: int before str in ``int | str``.
        for member in members:
            try:
                return _parse_value(text, member, key)
            except UsageError:
                continue
        raise UsageError(f"option {key}={text!r} is not a valid {annotation}")
    if annotation is bool:
        if text.strip().lower() in _TRUE:
            return True
        if text.strip().lower() in _FALSE:
            return False
        raise UsageError(f"option {key} takes true or false, not {text!r}")
    if annotation in (int, float):
        try:
            value = annotation(text)
        except ValueError:
            value = None
        if value is None:
            raise UsageError(f"option {key} takes a{'n integer' if annotation is int else ' number'}, not {text!r}")
        if not math.isfinite(value):
            raise UsageError(f"option {key} takes a finite number, not {text!r}")
        return value
    if annotation in (Path, os.PathLike):
        return str(Path(text).expanduser().resolve())
    return text  # str, and types a constructor reads from text itself (a class list)


class Registry(Generic[T]):
    def __init__(self, kind: str, builtin_modules: dict[str, str] | None = None) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        # name -> module that registers it, imported on first use
        self._builtin_modules = dict(builtin_modules or {})

    def register(self, *names: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            for name in names:
                self._factories[name.lower()] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(set(self._factories) | set(self._builtin_modules))

    def factory(self, name: str) -> Callable[..., T]:
        key = name.lower()
        if key not in self._factories and key in self._builtin_modules:
            importlib.import_module(self._builtin_modules[key])
        try:
            return self._factories[key]
        except KeyError:
            raise UnknownComponentError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}") from None

    def create(self, name: str, **options: Any) -> T:
        return self.factory(name)(**options)

    def option_types(self, name: str) -> dict[str, Any]:
        """The options ``name`` takes and the type each is declared with."""
        factory = self.factory(name)
        target = factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]
        hints = typing.get_type_hints(target)
        return {
            p.name: hints.get(p.name, str)
            for p in inspect.signature(factory).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    def parse_options(self, name: str, raw: Mapping[str, str]) -> dict[str, Any]:
        """Options given as text (``KEY=VALUE`` on a command line), converted by their declared
        types; an option ``name`` does not take is refused with the ones it does."""
        types_ = self.option_types(name)
        parsed = {}
        for key, text in raw.items():
            if key not in types_:
                known = ", ".join(sorted(types_)) or "none"
                raise UsageError(f"{self.kind} {name!r} has no option {key!r}; its options: {known}")
            parsed[key] = _parse_value(text, types_[key], key)
        return parsed


# Built-in implementations, by the name users type.
EMBEDDERS: Registry = Registry(
    "embedder",
    {
        "efficientnet-lite2": "fashion_search.embed.onnx_cnn",
        "efficientnet-lite2+colour": "fashion_search.embed.colour",
        "colour-histogram": "fashion_search.embed.colour",
        "garment-head": "fashion_search.embed.garment_head",
        "resnet152": "fashion_search.embed.resnet",
    },
)
DETECTORS: Registry = Registry(
    "garment detector",
    {
        "parser": "fashion_search.garments.parser",
        "foreground": "fashion_search.garments.foreground",
        "whole-image": "fashion_search.garments.foreground",
        "maskrcnn": "fashion_search.garments.maskrcnn",
    },
)
# Text -> vectors in an embedder's space, for text queries.
TEXT_ENCODERS: Registry = Registry("text encoder", {"minilm-tower": "fashion_search.embed.text_encoder"})
# Stores are keyed by URI scheme; a bare path means the embedded default.
STORES: Registry = Registry(
    "vector store",
    {
        "lancedb": "fashion_search.store.lance",
        # PostgreSQL with pgvector, for indexes shared by several processes (the postgres extra).
        "postgresql": "fashion_search.store.postgres",
        "postgres": "fashion_search.store.postgres",
    },
)

DEFAULT_EMBEDDER = "garment-head"
DEFAULT_DETECTOR = "parser"
DEFAULT_STORE_SCHEME = "lancedb"
DEFAULT_TEXT_ENCODER = "minilm-tower"

__all__ = [
    "DETECTORS",
    "DEFAULT_DETECTOR",
    "DEFAULT_EMBEDDER",
    "DEFAULT_STORE_SCHEME",
    "EMBEDDERS",
    "PathLike",
    "Registry",
    "STORES",
    "TEXT_ENCODERS",
    "DEFAULT_TEXT_ENCODER",
    "UnknownComponentError",
]
