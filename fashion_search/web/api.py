"""The JSON API's routes. They translate HTTP to the Python API (the read side,
:class:`~fashion_search.search.Searcher`, and the write side,
:class:`~fashion_search.writer.CatalogWriter`) and back; no search logic lives here."""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import unquote_to_bytes

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPBearer
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile as StarletteUploadFile

from fashion_search.catalog.validation import WriteRequestError, bulk_product_id, check_bulk_entry, parse_json
from fashion_search.embed.text_encoder import MAX_TEXT_CHARS
from fashion_search.errors import CatalogError, ImageError, TextSearchError, UnknownProductError, UsageError
from fashion_search.images import IMAGE_FORMATS, load_image
from fashion_search.search import Searcher, SearchResult
from fashion_search.store import Hit
from fashion_search.store.filters import MAX_FILTER_CHARS, Filter
from fashion_search.web.errors import ApiError, error_body, too_large_message
from fashion_search.web.schemas import (
    BulkWriteResponse,
    CategoriesResponse,
    ErrorResponse,
    FiltersResponse,
    HealthResponse,
    ProductDeleteResponse,
    ProductResponse,
    ProductWriteResponse,
    SearchResponse,
)
from fashion_search.web.state import PixelBudget, run_cpu, run_light
from fashion_search.writer import ProductWrite

log = logging.getLogger("fashion_search.web")
router = APIRouter()

MAX_K = 100
# Formats a shopper's photo comes in. Anything else is refused before decoding, which also
# keeps Pillow's riskier plug-ins (EPS runs Ghostscript) away from uploads.
UPLOAD_FORMATS = IMAGE_FORMATS
THUMBNAIL_QUALITY = 82


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorResponse} for s in statuses}


def _urls(request: Request, image_id: str) -> dict[str, str]:
    base = f"{request.scope.get('root_path', '')}/api/images/{image_id}"
    return {"image_id": image_id, "image": base, "thumbnail": f"{base}/thumbnail"}


def _search_json(request: Request, result: SearchResult, query_image_id: Optional[str] = None) -> dict[str, Any]:
    data = result.to_dict()
    for garment_json, garment in zip(data.get("garments", []), result.garments):
        for result_json, product in zip(garment_json["results"], garment.results):
            result_json.update(_urls(request, product.image_id))
    for result_json, product in zip(data.get("results", []), result.results or []):
        result_json.update(_urls(request, product.image_id))
    data["query_image"] = _urls(request, query_image_id)["image"] if query_image_id else None
    return data


def check_upload(data: bytes, max_pixels: int) -> int:
    """Refuse what is not a photo by its content (never its name), before the full decode;
    the pixels it will decode to."""
    if not data:
        raise ApiError(422, "empty_file", "the uploaded file is empty")
    try:
        with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as img:
            width, height = img.size
    except Image.DecompressionBombError as exc:
        raise ApiError(422, "too_many_pixels", f"image has too many pixels: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ApiError(
            415, "not_an_image", "the file is not an image this server reads (JPEG, PNG, WebP, GIF, BMP or TIFF)"
        ) from None
    if width * height > max_pixels:
        raise ApiError(
            422, "too_many_pixels", f"image has {width}x{height} pixels, more than the {max_pixels:,} allowed"
        )
    return width * height


def product_id_in_path(request: Request, product_id: str = Path(description="a catalog product id")) -> str:
    """The product id of a route's path, refused (422 ``bad_product_id``) unless it is valid
    UTF-8 once percent-decoded: the server's decoding would otherwise turn the bytes it cannot
    read into U+FFFD, and two different ids into one."""
    raw = request.scope.get("raw_path")
    if raw is not None:
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(422, "bad_product_id", "the product id is not valid UTF-8 once percent-decoded") from None
    return product_id


@dataclass
class SearchOptions:
    k: int
    category: Optional[str]
    same_class: bool
    where: Optional[Filter] = None


def _search_upload(
    searcher: Searcher,
    data: bytes,
    budget: PixelBudget,
    max_pixels: int,
    options: SearchOptions,
    name: str,
    text: Optional[str] = None,
) -> SearchResult:
    pixels = check_upload(data, max_pixels)
    try:
        with budget.hold(pixels):
            return searcher.search(
                data,
                k=options.k,
                category=options.category,
                query_name=name,
                same_class=options.same_class,
                where=options.where,
                text=text if text and text.strip() else None,
            )
    except ImageError as exc:
        raise ApiError(422, "corrupt_image", f"the image could not be decoded: {exc}") from None
    except UsageError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None
    except TextSearchError as exc:
        raise ApiError(422, "text_search_unavailable", str(exc)) from None


async def _known_category(request: Request, category: Optional[str]) -> Optional[str]:
    if not category:
        return None
    state = request.app.state
    known = await run_light(request, state.categories.get, state.searcher)
    if category not in known:
        raise ApiError(
            422, "unknown_category", f"no category {category!r} in this catalog; GET /api/categories lists them"
        )
    return category


CLASS_AWARE = (
    "class-aware search: each garment only meets the catalog categories that hold its class, "
    "and there garments of its class or a lookalike one"
)


async def search_options(
    request: Request,
    k: int = Query(12, ge=1, le=MAX_K, description="results per garment"),
    category: Optional[str] = Query(None, description="only products of this catalog category (see /api/categories)"),
    same_class: bool = Query(True, description=CLASS_AWARE),
    filter: Optional[str] = Query(
        None,
        max_length=MAX_FILTER_CHARS,
        description='only products whose metadata passes this filter, e.g. `brand = "Nike" and price < 50`; '
        "GET /api/filters lists the columns (grammar: docs/filters.md)",
    ),
) -> SearchOptions:
    where = await run_light(request, request.app.state.searcher.parse_filter, filter) if filter else None
    return SearchOptions(k, await _known_category(request, category), same_class, where)


@router.post(
    "/api/search",
    response_model=SearchResponse,
    responses=_errors(413, 415, 422),
    summary="Search by photo, by words, or both",
    tags=["search"],
)
async def search(
    request: Request,
    image: Optional[UploadFile] = File(
        None, description="the photo (multipart field `image`): JPEG, PNG, WebP, GIF, BMP or TIFF"
    ),
    text: Optional[str] = Form(
        None,
        max_length=MAX_TEXT_CHARS,
        description='words: alone ("red floral dress"), or with the photo ("in black") to search each garment '
        "as the words say it",
    ),
    options: SearchOptions = Depends(search_options),
) -> dict[str, Any]:
    """With a photo: the `k` most similar catalog products for each garment found in it (as the
    words say it, when `text` is sent too). With `text` alone: the `k` products the words
    describe, as `results`. The same schema as the CLI's `--json`, with image URLs instead of
    server paths."""
    state = request.app.state
    if image is None and (text is None or not text.strip()):
        raise ApiError(422, "invalid_request", "send a photo (field `image`), words (field `text`), or both")
    if image is None:
        result = await run_cpu(request, _search_text, state.searcher, str(text), options)
        return _search_json(request, result)
    limit = state.settings.max_upload_bytes
    data = await image.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "upload_too_large", too_large_message(limit))
    result = await run_cpu(
        request,
        _search_upload,
        state.searcher,
        data,
        state.pixel_budget,
        state.settings.max_pixels,
        options,
        image.filename or "upload",
        text,
    )
    return _search_json(request, result)


def _search_text(searcher: Searcher, text: str, options: SearchOptions) -> SearchResult:
    try:
        return searcher.search_text(text, k=options.k, category=options.category, where=options.where)
    except UsageError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None
    except TextSearchError as exc:
        raise ApiError(422, "text_search_unavailable", str(exc)) from None


def _more_like_this(searcher: Searcher, product_id: str, options: SearchOptions) -> tuple[SearchResult, str]:
    try:
        result = searcher.search_product(
            product_id, k=options.k, category=options.category, same_class=options.same_class, where=options.where
        )
        hits = searcher.product(product_id)
    except UnknownProductError:
        raise ApiError(404, "unknown_product", f"no product {product_id!r} in this catalog") from None
    return result, hits[0].image_id


@router.post(
    "/api/search/product/{product_id:path}",
    response_model=SearchResponse,
    responses=_errors(404, 422),
    summary="More like this catalog product",
    tags=["search"],
)
async def more_like_this(
    request: Request,
    product_id: str = Depends(product_id_in_path),
    options: SearchOptions = Depends(search_options),
) -> dict[str, Any]:
    """Products similar to each garment of the product's first image (the product itself
    excluded); `query_image` is that image."""
    result, image_id = await run_cpu(request, _more_like_this, request.app.state.searcher, product_id, options)
    return _search_json(request, result, image_id)


@router.get("/api/categories", response_model=CategoriesResponse, tags=["catalog"], summary="Catalog categories")
async def categories(request: Request) -> dict[str, Any]:
    """Every catalog category with its number of products."""
    state = request.app.state
    known = await run_light(request, state.categories.get, state.searcher)
    return {"categories": [{"name": name, "products": n} for name, n in sorted(known.items())]}


@router.get("/api/filters", response_model=FiltersResponse, tags=["catalog"], summary="Metadata filters")
async def filters(request: Request) -> dict[str, Any]:
    """The metadata columns that searches may filter on (`filter=`), each with its type and
    either its values (a text column with few) or its range (a number column)."""
    columns = await run_light(request, lambda searcher: searcher.metadata_columns, request.app.state.searcher)
    return {"columns": list(columns.to_dict().values())}


def _product(searcher: Searcher, product_id: str) -> list[Hit]:
    try:
        return searcher.product(product_id)
    except UnknownProductError:
        raise ApiError(404, "unknown_product", f"no product {product_id!r} in this catalog") from None


@router.get(
    "/api/products/{product_id:path}",
    response_model=ProductResponse,
    responses=_errors(404, 422),
    tags=["catalog"],
    summary="A catalog product",
)
async def product(request: Request, product_id: str = Depends(product_id_in_path)) -> dict[str, Any]:
    """The product's metadata and its indexed images, each with its stored garments."""
    hits = await run_light(request, _product, request.app.state.searcher, product_id)
    images: dict[str, dict[str, Any]] = {}
    for hit in hits:
        entry = images.setdefault(hit.image_id, {**_urls(request, hit.image_id), "garments": []})
        entry["garments"].append({"label": hit.label, "box": list(hit.box)})
    return {
        "product_id": product_id,
        "category": hits[0].category,
        "metadata": hits[0].metadata,
        "images": list(images.values()),
    }


# -- catalog writes (need the API key; see ApiKeyGate) ---------------------------------------------

# Shown in the OpenAPI schema only: ApiKeyGate checks the key before the body is read.
_bearer = HTTPBearer(auto_error=False, description="the server's API key (--api-key-file)")


def _written(request: Request) -> None:
    """Drop what this server cached of the catalog and take over the record the write left, so
    that the next request sees the write. No I/O: it runs after the commit, so cannot fail."""
    state = request.app.state
    state.categories.forget()
    state.image_paths.clear()
    state.thumbnails.clear()
    state.searcher.use_record(state.writer.latest_record)


def _put(request: Request, product_id: str, images: list[bytes], category: str, metadata: Any) -> ProductWrite:
    state = request.app.state
    try:
        return state.writer.put_product(
            product_id, images, category, metadata, state.uploads, max_pixels=state.settings.max_pixels
        )
    except CatalogError as exc:
        raise ApiError(422, "bad_product", str(exc)) from None
    except ImageError as exc:
        raise ApiError(422, "bad_image", str(exc)) from None


def _json_field(text: Optional[str], what: str) -> Any:
    """A form field's JSON (None when empty), or a 422 ``bad_product`` saying why."""
    if text is None or not text.strip():
        return None
    try:
        return parse_json(text, what)
    except WriteRequestError as exc:
        raise ApiError(422, exc.code, str(exc)) from None


async def _read_images(request: Request, files: list[UploadFile]) -> list[bytes]:
    limit = request.app.state.settings.max_upload_bytes
    images = []
    for upload in files:
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, "upload_too_large", too_large_message(limit))
        images.append(data)
    return images


@router.put(
    "/api/products/{product_id:path}",
    response_model=ProductWriteResponse,
    # 404: an id with a line break matches no route (the path pattern stops at line ends).
    responses={**_errors(401, 403, 404, 405, 413, 422), 201: {"model": ProductWriteResponse}},
    tags=["catalog writes"],
    summary="Add or replace a product",
    dependencies=[Depends(_bearer)],
)
async def put_product(
    request: Request,
    product_id: str = Depends(product_id_in_path),
    images: list[UploadFile] = File(description="its photos (JPEG, PNG, WebP, GIF, BMP or TIFF), one field each"),
    category: str = Form(description="its catalog category"),
    metadata: Optional[str] = Form(None, description='a JSON object, e.g. {"brand": "Nike", "price": 49.9}'),
) -> JSONResponse:
    """The product becomes exactly these images, category and metadata, analysed as `index`
    analyses a catalog, in one atomic write: a search sees the old product or the new one.
    201 when it is new, 200 when it replaced one; sending the same again changes nothing.
    Everything is checked before the write; a 2xx means the product is stored and visible."""
    fields = _json_field(metadata, "metadata")
    data = await _read_images(request, images)
    write = await run_cpu(request, _put, request, product_id, data, category, fields)
    _written(request)
    return JSONResponse(write.to_dict(), status_code=201 if write.created else 200)


def _delete(request: Request, product_id: str) -> int:
    state = request.app.state
    try:
        return state.writer.delete_product(product_id, state.uploads)
    except UnknownProductError:
        raise ApiError(404, "unknown_product", f"no product {product_id!r} in this catalog") from None


@router.delete(
    "/api/products/{product_id:path}",
    response_model=ProductDeleteResponse,
    responses=_errors(401, 403, 404, 405, 422),
    tags=["catalog writes"],
    summary="Remove a product",
    dependencies=[Depends(_bearer)],
)
async def delete_product(request: Request, product_id: str = Depends(product_id_in_path)) -> dict:
    """All the product's images leave the index in one write."""
    removed = await run_cpu(request, _delete, request, product_id)
    _written(request)
    return {"product_id": product_id, "images": removed}


MAX_BULK_PRODUCTS = 100


@router.post(
    "/api/products",
    response_model=BulkWriteResponse,
    responses=_errors(401, 403, 405, 413, 422),
    tags=["catalog writes"],
    summary="Add or replace many products",
    dependencies=[Depends(_bearer)],
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["products"],
                        "properties": {
                            "products": {
                                "type": "string",
                                "description": "JSON list of {product_id, category, metadata, images: [names of "
                                "file fields]} (at most 100); a file may be named by several products",
                            }
                        },
                        "additionalProperties": {"type": "string", "format": "binary"},
                    }
                }
            },
            "required": True,
        }
    },
)
async def bulk_products(request: Request) -> dict:
    """Several products in one request; each is written as `PUT /api/products/{id}` writes it
    (checked whole first, then atomically, on its own), and `results` gives every product its
    status: a bad product does not stop the others. Each file is read once, however many
    products name it."""
    limit = request.app.state.settings.max_upload_bytes
    try:
        form = await request.form(max_files=MAX_BULK_PRODUCTS * 20, max_fields=MAX_BULK_PRODUCTS + 10)
    except Exception as exc:  # Starlette's MultiPartException and friends
        raise ApiError(422, "invalid_request", f"not a multipart form: {exc}") from None
    results: list[dict[str, Any]] = []
    try:
        field = form.get("products")
        listing = _json_field(field if isinstance(field, str) else None, "field `products`")
        if not isinstance(listing, list) or not listing or len(listing) > MAX_BULK_PRODUCTS:
            raise ApiError(
                422, "bad_product", f"field `products` must be a JSON list of 1 to {MAX_BULK_PRODUCTS} products"
            )
        files: dict[str, Optional[bytes]] = {}  # None: the file is over the size limit

        async def image(name: str) -> bytes:
            if name not in files:
                upload = form.get(name)
                if not isinstance(upload, StarletteUploadFile):
                    raise ApiError(422, "bad_product", f"the image field {name!r} is not a file in this request")
                data = await upload.read(limit + 1)
                files[name] = data if len(data) <= limit else None
            data = files[name]
            if data is None:
                raise ApiError(413, "upload_too_large", too_large_message(limit))
            return data

        for entry in listing:
            product_id = bulk_product_id(entry)
            try:
                checked = check_bulk_entry(entry)
                data = [await image(name) for name in checked.images]
                write = await run_cpu(
                    request, _put, request, checked.product_id, data, checked.category, checked.metadata
                )
                results.append({**write.to_dict(), "status": 201 if write.created else 200})
            except CatalogError as exc:
                results.append(_bulk_error(product_id, 422, "bad_product", str(exc)))
            except ApiError as exc:
                results.append(_bulk_error(product_id, exc.status, exc.code, exc.message))
            except Exception:  # one product's failure is its status, never the others' loss
                log.exception("bulk write: product %r failed", product_id)
                results.append(
                    _bulk_error(product_id, 500, "internal_error", "internal server error; it has been logged")
                )
    finally:
        try:
            await form.close()
        except Exception:  # spooled files left to the garbage collector; the statuses stand
            log.exception("bulk write: the request's files could not be closed")
        _written(request)
    return {"results": results}


def _bulk_error(product_id: Optional[str], status: int, code: str, message: str) -> dict[str, Any]:
    return {"product_id": product_id, "status": status, "error": error_body(code, message)["error"]}


def _health(searcher: Searcher) -> dict[str, Any]:
    pipeline = searcher.pipeline
    body = {
        "status": "ok",
        "store_reachable": True,
        "models_loaded": pipeline.embedder is not None and pipeline.detector is not None,
        "index_garments": 0,
        "embedder": pipeline.embedder_spec.name,
        "detector": pipeline.detector_spec.name,
        "index_models_changed": False,
    }
    try:
        body["index_garments"] = searcher.garment_count()
        searcher.refresh_record_if_due()
    except Exception as exc:  # the report is the point: say unavailable rather than fail
        log.warning("health check: store unreachable: %s", exc)
        body.update(status="unavailable", store_reachable=False)
    if searcher.models_changed:
        body.update(status="unavailable", index_models_changed=True)
    if not body["models_loaded"]:
        body["status"] = "unavailable"
    return body


@router.get(
    "/healthz",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse}},
    tags=["service"],
    summary="Liveness and readiness",
)
async def healthz(request: Request) -> Any:
    """`ok` (200) when the store answers and the models are loaded, else `unavailable` (503)."""
    body = await run_light(request, _health, request.app.state.searcher)
    return body if body["status"] == "ok" else JSONResponse(body, status_code=503)


def _image_path(request: Request, image_id: str) -> str:
    """The file of an indexed image. Only ids the store holds resolve: clients never name paths."""
    cache = request.app.state.image_paths
    path = cache.get(image_id)
    if path is None:
        path = request.app.state.searcher.image_path(image_id)
        if path is None:
            raise ApiError(404, "unknown_image", f"no image {image_id!r} in this index")
        cache.put(image_id, path)
    if not os.path.isfile(path):
        raise ApiError(404, "image_file_missing", f"image {image_id!r} is indexed but its file is gone")
    return path


def _cache_headers(request: Request, etag: str) -> dict[str, str]:
    return {
        "Cache-Control": f"public, max-age={request.app.state.settings.image_max_age_s}",
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",  # the type sent is the content's: browsers must not guess
    }


def _etag(path: str, image_id: str, variant: str) -> str:
    stat = os.stat(path)
    return f'"{image_id}-{variant}-{stat.st_size:x}-{stat.st_mtime_ns:x}"'


@router.get(
    "/api/images/{image_id}",
    responses={200: {"content": {"image/jpeg": {}}}, **_errors(404)},
    tags=["catalog"],
    summary="A catalog image",
)
async def catalog_image(request: Request, image_id: str) -> Response:
    """The original file of an indexed catalog image, by its id."""
    path = await run_light(request, _image_path, request, image_id)
    media_type = await run_light(request, _sniffed_media_type, path)
    if media_type is None:
        raise ApiError(422, "corrupt_image", f"image {image_id!r} is no longer an image this server reads")
    return FileResponse(path, media_type=media_type, headers=_cache_headers(request, _etag(path, image_id, "full")))


def _sniffed_media_type(path: str) -> Optional[str]:
    """The file's media type by its content (its header), never by its name: a catalog file
    named .jpg may hold HTML, which a browser must not be told to render."""
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as img:
            return Image.MIME.get(img.format or "")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        return None


def _cached_thumbnail(request: Request, image_id: str, size: int) -> tuple[str, str, Optional[bytes]]:
    """(path, etag, the cached thumbnail or None): the cheap part of serving a thumbnail."""
    path = _image_path(request, image_id)
    etag = _etag(path, image_id, str(size))
    cached = request.app.state.thumbnails.get((image_id, size))
    return path, etag, cached[0] if cached is not None and cached[1] == etag else None


def _thumbnail(request: Request, path: str, image_id: str, size: int, etag: str) -> bytes:
    cache = request.app.state.thumbnails
    # The upload's pixel cap holds here too: a catalog file may have been replaced since it was
    # indexed (by a decompression bomb, say). JPEGs decode at 1/2-1/8 scale for thumbnails.
    picture = load_image(path, max_pixels=request.app.state.settings.max_pixels, draft=(size, size))
    picture.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    cache.put((image_id, size), (out.getvalue(), etag))
    return out.getvalue()


@router.get(
    "/api/images/{image_id}/thumbnail",
    responses={200: {"content": {"image/jpeg": {}}}, **_errors(404)},
    tags=["catalog"],
    summary="A thumbnail of a catalog image",
)
async def thumbnail(
    request: Request, image_id: str, size: int = Query(320, ge=32, le=1024, description="longest side in pixels")
) -> Response:
    """A JPEG of an indexed catalog image, at most `size` pixels on its longest side."""
    path, etag, data = await run_light(request, _cached_thumbnail, request, image_id, size)
    headers = _cache_headers(request, etag)
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    try:
        if data is None:
            data = await run_cpu(request, _thumbnail, request, path, image_id, size, etag)
    except ImageError as exc:
        raise ApiError(422, "corrupt_image", f"image {image_id!r} cannot be decoded: {exc}") from None
    return Response(data, media_type="image/jpeg", headers=headers)
