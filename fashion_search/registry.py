"""One registry per pluggable stage: models and stores are chosen by name, never by ``if`` chains.

Implementations register themselves with a decorator; the registry imports the modules that
hold the built-in implementations lazily, so that optional extras (torch) are only imported
when the implementation that needs them is asked for.
"""
from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class UnknownComponentError(KeyError):
    """Raised when a name or URI scheme matches no registered implementation."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


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
            raise UnknownComponentError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}"
            ) from None

    def create(self, name: str, **options: object) -> T:
        return self.factory(name)(**options)


# Built-in implementations, by the name users type.
EMBEDDERS: Registry = Registry(
    "embedder",
    {
        "efficientnet-lite2": "fashion_search.embed.onnx_cnn",
        "efficientnet-lite2+colour": "fashion_search.embed.colour",
        "colour-histogram": "fashion_search.embed.colour",
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
# Stores are keyed by URI scheme; a bare path means the embedded default.
STORES: Registry = Registry("vector store", {"lancedb": "fashion_search.store.lance"})

DEFAULT_EMBEDDER = "efficientnet-lite2+colour"
DEFAULT_DETECTOR = "parser"
DEFAULT_STORE_SCHEME = "lancedb"
