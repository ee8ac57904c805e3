"""The ASGI application: the JSON API and the search page, over one :class:`SearchEngine`.

The engine (models and store) is created once, before the first request, and held in
``app.state``; requests share it and keep their own state in locals only. Everything that
decodes, embeds or reads the store runs in worker threads, at most ``search_threads`` at a
time, so the event loop keeps answering (health checks, thumbnails from cache) while searches
run.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, ClassVar, Hashable, Iterator, Mapping, Optional, TypeVar, Union

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from fashion_search.catalog.uploads import UploadFolder
from fashion_search.engine import SearchEngine
from fashion_search.errors import UsageError
from fashion_search.web.errors import ApiKeyGate, BodySizeLimit, CatchAll, install_error_handlers

STATIC = Path(__file__).resolve().parent / "static"
T = TypeVar("T")


ENV_PREFIX = "FASHION_SEARCH_"


@dataclass
class Settings:
    """Limits and tuning of one server. The defaults suit a public-facing shop search; each can
    be set from the environment (:meth:`from_env`), which suits containers and process managers."""

    max_upload_bytes: int = 10 * 1024 * 1024
    # Decoded pixels allowed per upload: a 40 MP photo is ~120 MB of RGB; a few-KB file that
    # claims more is a decompression bomb.
    max_pixels: int = 40_000_000
    # Decoded pixels of all searches in flight together: eight 40 MP uploads at once would
    # otherwise hold ~1 GB of RGB; past the budget, a search waits for others to finish.
    decode_pixels: int = 80_000_000
    # Concurrent CPU-bound jobs (searches, thumbnails); more than the cores only adds latency.
    search_threads: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    thumbnail_cache_entries: int = 2048
    image_max_age_s: int = 24 * 3600
    categories_ttl_s: float = 60.0
    # Catalog writes (PUT/DELETE /api/products/..., POST /api/products) need this key as a
    # bearer token; without one they are off. Never shown (repr) or logged.
    api_key: Optional[str] = field(default=None, repr=False)
    protect_reads: bool = False  # reads need the key too (health checks stay open)
    uploads: Optional[str] = None  # where written products' images are kept (default: beside a Lance index)
    max_write_bytes: int = 64 * 1024 * 1024  # one catalog write request (all its images)
    body_timeout_s: float = 60.0  # to send a whole request body; a slower client gets 408

    # Environment variable (after ENV_PREFIX) -> (field, how its text becomes the field's value).
    ENVIRONMENT: ClassVar[dict[str, tuple[str, Callable[[str], Any]]]] = {
        "MAX_UPLOAD_MB": ("max_upload_bytes", lambda text: int(float(text) * 2**20)),
        "MAX_PIXELS": ("max_pixels", int),
        "DECODE_PIXELS": ("decode_pixels", int),
        "THREADS": ("search_threads", int),
        "THUMBNAIL_CACHE": ("thumbnail_cache_entries", int),
        "IMAGE_MAX_AGE_S": ("image_max_age_s", int),
        "CATEGORIES_TTL_S": ("categories_ttl_s", float),
        "MAX_WRITE_MB": ("max_write_bytes", lambda text: int(float(text) * 2**20)),
        "BODY_TIMEOUT_S": ("body_timeout_s", float),
    }

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "Settings":
        """The defaults, overridden by ``FASHION_SEARCH_MAX_UPLOAD_MB``, ``_MAX_PIXELS``, ``_DECODE_PIXELS``,
        ``_THREADS``, ``_THUMBNAIL_CACHE``, ``_IMAGE_MAX_AGE_S`` and ``_CATEGORIES_TTL_S``
        where they are set."""
        environ = os.environ if environ is None else environ
        settings = cls()
        for name, (attribute, parse) in cls.ENVIRONMENT.items():
            text = environ.get(ENV_PREFIX + name, "").strip()
            if not text:
                continue
            try:
                value = parse(text)
            except ValueError:
                raise UsageError(f"{ENV_PREFIX}{name}={text!r} is not a number") from None
            if value <= 0:
                raise UsageError(f"{ENV_PREFIX}{name} must be positive, not {text}")
            setattr(settings, attribute, value)
        if environ.get(ENV_PREFIX + "API_KEY_FILE", "").strip():
            settings.api_key = read_api_key(environ[ENV_PREFIX + "API_KEY_FILE"].strip())
        elif environ.get(ENV_PREFIX + "API_KEY", "").strip():
            settings.api_key = check_api_key(environ[ENV_PREFIX + "API_KEY"].strip(), f"{ENV_PREFIX}API_KEY")
        flag = environ.get(ENV_PREFIX + "PROTECT_READS", "").strip().lower()
        if flag not in ("", "0", "false", "no", "1", "true", "yes"):
            raise UsageError(f"{ENV_PREFIX}PROTECT_READS takes true or false, not {flag!r}")
        settings.protect_reads = flag in ("1", "true", "yes")
        settings.uploads = environ.get(ENV_PREFIX + "UPLOADS", "").strip() or None
        return settings


MIN_API_KEY_CHARS = 16


def check_api_key(key: str, source: str) -> str:
    if len(key) < MIN_API_KEY_CHARS or not key.isprintable() or " " in key:
        raise UsageError(
            f"the API key from {source} must be at least {MIN_API_KEY_CHARS} printable characters without spaces "
            "(e.g. `openssl rand -hex 32`)"
        )
    return key


def read_api_key(path: str | os.PathLike) -> str:
    """The key in the file at ``path`` (its first line), checked."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the API key file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return check_api_key(text.strip().splitlines()[0].strip() if text.strip() else "", str(path))


class LruCache:
    """A small thread-safe LRU map (thumbnails, image paths): shared by requests on purpose,
    as it holds catalog data, never anything of one request."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        return None

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)


class PixelBudget:
    """Pixels that searches in flight may hold decoded, together. A search takes its image's
    share before decoding and gives it back when done; one that would pass the budget waits.
    An image larger than the whole budget takes all of it (the per-image cap refuses worse)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, int(capacity))
        self.used = 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        share = min(max(0, int(pixels)), self.capacity)
        with self._changed:
            self._changed.wait_for(lambda: self.used + share <= self.capacity)
            self.used += share
        try:
            yield
        finally:
            with self._changed:
                self.used -= share
                self._changed.notify_all()


class Categories:
    """The catalog's categories, re-read from the store at most every ``ttl`` seconds: asked on
    every filtered search, and a full scan of a large store."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._value: Optional[dict[str, int]] = None
        self._read_at = 0.0

    def get(self, engine: SearchEngine) -> dict[str, int]:
        now = time.monotonic()
        if self._value is None or now - self._read_at > self.ttl:
            self._value, self._read_at = engine.store.categories(), now
        return self._value

    def forget(self) -> None:
        """Re-read at the next ask: this server changed the catalog."""
        self._value = None


# Threads for cheap blocking reads (health, categories, a product's rows, cached thumbnails):
# their own pool, so that they answer in milliseconds while every search thread is busy.
LIGHT_THREADS = 8


async def run_cpu(request: Request, func: Callable[..., T], *args: Any) -> T:
    """Run blocking work in a worker thread, within the app's concurrency limit."""
    return await anyio.to_thread.run_sync(func, *args, limiter=request.app.state.cpu_limiter)


async def run_light(request: Request, func: Callable[..., T], *args: Any) -> T:
    """Run a cheap blocking read in a thread of its own pool, never queued behind searches
    (a load balancer's health probe must not time out on a busy but healthy server)."""
    return await anyio.to_thread.run_sync(func, *args, limiter=request.app.state.light_limiter)


def create_app(engine_or_db: Union[SearchEngine, str, os.PathLike], settings: Optional[Settings] = None) -> FastAPI:
    """The web app over an open engine, or over the index at a path (opened here, with its
    models loaded and the store warmed, so the first request is as fast as the rest)."""
    from fashion_search.web.api import router  # routes import this module's helpers

    settings = settings or Settings()
    owned = not isinstance(engine_or_db, SearchEngine)
    engine = SearchEngine.open(engine_or_db, warm=True) if owned else engine_or_db

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Per event loop: a limiter belongs to the loop that serves the requests.
        app.state.cpu_limiter = anyio.CapacityLimiter(settings.search_threads)
        app.state.light_limiter = anyio.CapacityLimiter(LIGHT_THREADS)
        try:
            yield
        finally:
            if owned:
                engine.close()

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
    engine.manifest_ttl_s = settings.categories_ttl_s
    app.state.engine = engine
    app.state.settings = settings
    app.state.cpu_limiter = anyio.CapacityLimiter(settings.search_threads)
    app.state.light_limiter = anyio.CapacityLimiter(LIGHT_THREADS)
    app.state.pixel_budget = PixelBudget(settings.decode_pixels)
    app.state.thumbnails = LruCache(settings.thumbnail_cache_entries)
    app.state.image_paths = LruCache(max(settings.thumbnail_cache_entries, 4096))
    app.state.categories = Categories(settings.categories_ttl_s)
    app.state.uploads = _upload_folder(engine, settings) if settings.api_key else None

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


def is_catalog_write(method: str, path: str) -> bool:
    """Whether a request changes the catalog: what needs the API key, and may be larger."""
    if method in ("PUT", "DELETE"):
        return path.startswith("/api/products/")
    return method == "POST" and path.rstrip("/") == "/api/products"


def _upload_folder(engine: SearchEngine, settings: Settings) -> UploadFolder:
    if settings.uploads:
        return UploadFolder(settings.uploads)
    uri = engine.store.uri
    if not uri.startswith("lancedb://"):
        raise UsageError(
            "catalog writes to a server-side index need --uploads DIR (or FASHION_SEARCH_UPLOADS): "
            "a folder every replica can read, where written products' images are kept"
        )
    return UploadFolder(Path(uri.removeprefix("lancedb://")) / "uploads")


def _version() -> str:
    from fashion_search import __version__

    return __version__
