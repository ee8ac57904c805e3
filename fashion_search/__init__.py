"""fashion-search: find the catalog products that look like the clothes in a photo.

Pipeline: catalog -> garments (detect) -> embed -> store -> search -> CLI / API.
"""

from fashion_search.catalog import CatalogItem, CsvColumns, load_catalog
from fashion_search.engine import SearchEngine, SearchResult
from fashion_search.errors import FashionSearchError, ImageError, UnknownProductError
from fashion_search.images import load_image
from fashion_search.pipeline import Component, GarmentPipeline

__version__ = "0.2.0"

__all__ = [
    "CatalogItem",
    "Component",
    "CsvColumns",
    "FashionSearchError",
    "GarmentPipeline",
    "ImageError",
    "SearchEngine",
    "SearchResult",
    "UnknownProductError",
    "load_catalog",
    "load_image",
]
