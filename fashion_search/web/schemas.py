"""What the HTTP API returns: the JSON shapes that the OpenAPI schema at ``/docs`` documents.

Search responses keep the CLI's ``--json`` schema (``query``, ``garments`` with ``label``,
``score``, ``box``, ``results``, and ``timings_ms``), except that a result's ``image`` is the URL
the server shows that catalog image at rather than a path on the server's disk, and each
result also carries its ``image_id`` and a ``thumbnail`` URL.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable reason, e.g. `upload_too_large`, `not_an_image`")
    message: str = Field(description="what went wrong, for people")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Mask(BaseModel):
    """A garment's pixels: uncompressed run-length encoding of the boolean mask in row-major
    order; runs alternate starting with False (the first count may be 0)."""

    size: list[int] = Field(description="[height, width]")
    counts: list[int]


class ProductHit(BaseModel):
    product_id: str
    category: str
    image: str = Field(description="URL of the best-matching view of the product")
    thumbnail: str = Field(description="URL of a small JPEG of that view")
    image_id: str
    score: float = Field(description="cosine similarity of that view, higher is closer")
    metadata: dict[str, Any]


class GarmentMatches(BaseModel):
    label: str = Field(description="garment class, or `item`/`image` for the model-free detectors")
    score: float
    box: list[int] = Field(description="[x1, y1, x2, y2] in pixels of the upright photo, x2/y2 exclusive")
    mask: Optional[Mask] = None
    results: list[ProductHit]


class TextQuery(BaseModel):
    image: Optional[str] = Field(None, description="the photo's name, when the query has one")
    text: Optional[str] = Field(None, description="the words")


class SearchResponse(BaseModel):
    query: Union[str, TextQuery] = Field(description="the photo's name, or the photo and words of a query with words")
    query_image: Optional[str] = Field(None, description="URL of the catalog image used as the query (more like this)")
    garments: Optional[list[GarmentMatches]] = Field(
        None, description="per garment found in the photo (absent for words alone)"
    )
    results: Optional[list[ProductHit]] = Field(None, description="the products words alone describe")
    timings_ms: dict[str, float]


class Category(BaseModel):
    name: str
    products: int


class CategoriesResponse(BaseModel):
    categories: list[Category]


class FilterColumn(BaseModel):
    name: str
    type: str = Field(description="`number` (ranges allowed) or `text`")
    products: int = Field(description="products that have a value")
    values: Optional[list[str]] = Field(None, description="a text column's values, when at most 50")
    min: Optional[float] = None
    max: Optional[float] = None
    counts: Optional[dict[str, int]] = Field(
        None, description="products per value, when the column has at most 50 distinct values"
    )


class FiltersResponse(BaseModel):
    columns: list[FilterColumn]


class StoredGarment(BaseModel):
    label: str
    box: list[float]


class ProductImage(BaseModel):
    image_id: str
    image: str
    thumbnail: str
    garments: list[StoredGarment]


class ProductResponse(BaseModel):
    product_id: str
    category: str
    metadata: dict[str, Any]
    images: list[ProductImage]


class HealthResponse(BaseModel):
    status: str = Field(
        description="`ok`, or `unavailable` when the store cannot be read or the index was rebuilt with other models"
    )
    store_reachable: bool
    models_loaded: bool
    index_garments: int = Field(description="garments in the index (rows of the store)")
    embedder: str
    detector: str
    index_models_changed: bool = Field(
        False, description="the index was rebuilt with other models since this process started: restart it"
    )


class ProductWriteResponse(BaseModel):
    product_id: str
    category: str
    images: int = Field(description="images the product now has")
    garments: int = Field(description="garments stored for them")
    created: bool = Field(description="the product is new (201), not a replacement (200)")


class ProductDeleteResponse(BaseModel):
    product_id: str
    images: int = Field(description="images it had")


class BulkResult(BaseModel):
    product_id: Optional[str] = None
    status: int = Field(description="what PUT /api/products/{id} would have answered for it")
    category: Optional[str] = None
    images: Optional[int] = None
    garments: Optional[int] = None
    created: Optional[bool] = None
    error: Optional[ErrorDetail] = None


class BulkWriteResponse(BaseModel):
    results: list[BulkResult]
