"""The ASGI application: the JSON API and the search page, over one index.

The read side (:class:`~fashion_search.search.Searcher`) and, when writes are on, the write side
(:class:`~fashion_search.writer.CatalogWriter`) are created once, before the first request, and
held in ``app.state`` with the caches every request shares (:mod:`fashion_search.web.state`);
requests keep their own state in locals only. Everything that decodes, embeds or reads the
store runs in worker threads, at most ``Settings.search_threads`` at a time, so the event loop
keeps answering (health checks, thumbnails from cache) while searches run.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Optional, Union

import anyio
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from fashion_search.catalog.uploads import UploadFolder
from fashion_search.engine import SearchEngine
from fashion_search.errors import UsageError
from fashion_search.pipeline import Component
from fashion_search.search import Searcher
from fashion_search.settings import Settings
from fashion_search.web.api import router
from fashion_search.web.errors import ApiKeyGate, BodySizeLimit, CatchAll, install_error_handlers
from fashion_search.web.state import (
    LIGHT_THREADS,
    Categories,
    LruCache,
    PixelBudget,
    is_catalog_write,
)
from fashion_search.writer import CatalogWriter

STATIC = Path(__file__).resolve().parent / "static"


def create_app(
    index: Union[SearchEngine, Searcher, str, os.PathLike],
    settings: Optional[Settings] = None,
    text_encoder: Optional[Component] = None,
) -> FastAPI:
    """The web app over an open index (a :class:`SearchEngine` or a :class:`Searcher`), or over
    the index at a path (opened here, with its models loaded and the store warmed, so the first
    request is as fast as the rest; words are read by ``text_encoder``, default the shipped one)."""
    settings = settings or Settings()
    owned = not isinstance(index, (SearchEngine, Searcher))
    if isinstance(index, SearchEngine):
        searcher = index.searcher
    elif isinstance(index, Searcher):
        searcher = index
    else:
        searcher = Searcher.open(index, warm=True, text_encoder=text_encoder)
    # Writes share the searcher's store and models: one set per server.
    writer = CatalogWriter(searcher.store, searcher.pipeline) if settings.api_key else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Per event loop: a limiter belongs to the loop that serves the requests.
        app.state.cpu_limiter = anyio.CapacityLimiter(settings.search_threads)
        app.state.light_limiter = anyio.CapacityLimiter(LIGHT_THREADS)
        try:
            yield
        finally:
            if owned:
                searcher.close()

    try:
        from fastapi_offline import FastAPIOffline as _FastAPI  # Swagger UI without a CDN
    except ImportError:  # pragma: no cover - the dependency is declared; docs then use a CDN
        _FastAPI = FastAPI
    app = _FastAPI(
        title="fashion-search",
        summary="Visual search for fashion catalogs: find the products that look like the clothes in a photo.",
        version=_version(),
        lifespan=lifespan,
    )
    # Replicas over one store see other processes' index runs: rows at once (the store is
    # read live), learned category classes and the models' record every categories_ttl_s.
    searcher.record_ttl_s = settings.categories_ttl_s
    app.state.searcher = searcher
    app.state.writer = writer
    app.state.settings = settings
    app.state.cpu_limiter = anyio.CapacityLimiter(settings.search_threads)
    app.state.light_limiter = anyio.CapacityLimiter(LIGHT_THREADS)
    app.state.pixel_budget = PixelBudget(settings.decode_pixels)
    app.state.thumbnails = LruCache(settings.thumbnail_cache_entries)
    app.state.image_paths = LruCache(max(settings.thumbnail_cache_entries, 4096))
    app.state.categories = Categories(settings.categories_ttl_s)
    app.state.uploads = _upload_folder(writer, settings) if writer is not None else None

    install_error_handlers(app)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    # Outermost last: the key is checked, then the size limited, before anything reads the body.
    app.add_middleware(CatchAll)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_upload_bytes,
        write_bytes=settings.max_write_bytes,
        is_write=is_catalog_write,
        body_timeout_s=settings.body_timeout_s,
    )
    app.add_middleware(
        ApiKeyGate, key=settings.api_key, protect_reads=settings.protect_reads, is_write=is_catalog_write
    )
    return app


def _upload_folder(writer: CatalogWriter, settings: Settings) -> UploadFolder:
    if settings.uploads:
        return UploadFolder(settings.uploads)
    folder = writer.store.local_folder()
    if folder is None:
        raise UsageError(
            "catalog writes to a server-side index need --uploads DIR (or FASHION_SEARCH_UPLOADS): "
            "a folder every replica can read, where written products' images are kept"
        )
    return UploadFolder(folder / "uploads")


def _version() -> str:
    from fashion_search import __version__

    return __version__


__all__ = ["STATIC", "create_app"]
