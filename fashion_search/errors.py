"""Every error fashion-search raises for a user to read, in one place.

Each derives from :class:`FashionSearchError`, so the CLI prints any of them as one line (and
the web layer maps the ones a request can cause to a status), while a bug keeps its traceback.
Each also derives from the built-in exception a caller would expect (``ValueError`` for bad
input, ``KeyError`` for unknown names, ...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class FashionSearchError(Exception):
    """A problem the user can act on: bad input, a missing file or extra, an index that does
    not fit the installed models."""


class UsageError(FashionSearchError, ValueError):
    """Options or arguments that are invalid or do not go together."""


class MissingDependencyError(FashionSearchError, ImportError):
    """An optional extra is not installed; the message names the ``pip install`` command."""


class ModelError(FashionSearchError, ValueError):
    """A model file that cannot be used: another architecture, classes the code does not know,
    a corrupt checkpoint."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """A model or weights file that does not exist."""


class StoreError(FashionSearchError, ValueError):
    """A vector store that cannot be opened or written as asked."""


class EmptyIndexError(FashionSearchError, RuntimeError):
    """Searching an index that has never been built."""


class IndexMismatchError(FashionSearchError, RuntimeError):
    """The index was built with other models (or other weights) than the ones asked for or
    installed: its vectors cannot be mixed with or compared to new ones."""


class UnknownComponentError(FashionSearchError, KeyError):
    """A model or store name (or URI scheme) that no registered implementation has."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown component"


class UnknownProductError(FashionSearchError, KeyError):
    """A product id that the index does not hold."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown product"


class TextSearchError(FashionSearchError, RuntimeError):
    """Words cannot be searched in this index: its vectors were made by an embedder the text
    encoder was not trained for."""


class CatalogError(FashionSearchError, ValueError):
    """A catalog that cannot be read at all (missing folder, CSV without the needed columns)."""


class ImageError(FashionSearchError, ValueError):
    """An input that is not a usable image: corrupt, truncated, empty, not an image, too large."""


__all__ = [
    "CatalogError",
    "EmptyIndexError",
    "FashionSearchError",
    "ImageError",
    "IndexMismatchError",
    "MissingDependencyError",
    "ModelError",
    "ModelNotFoundError",
    "StoreError",
    "TextSearchError",
    "UnknownComponentError",
    "UnknownProductError",
    "UsageError",
]
