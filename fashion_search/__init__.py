"""fashion-search: find the catalog products that look like the clothes in a photo.

Pipeline: catalog -> garments (detect) -> embed -> store -> search -> CLI / API.
"""
from fashion_search.catalog import CatalogItem, CsvColumns, load_catalog
from fashion_search.engine import SearchEngine, SearchResult, UnknownProductError
from fashion_search.images import ImageError, load_image
from fashion_search.pipeline import Component, GarmentPipeline

__version__ = "0.1.0"

__all__ = [
    "CatalogItem",
    "Component",
    "CsvColumns",
    "GarmentPipeline",
    "ImageError",
    "SearchEngine",
    "SearchResult",
    "UnknownProductError",
    "load_catalog",
    "load_image",
]
