"""What the app and its routes share: caches and budgets held in ``app.state`` for every request,
and the thread pools that keep blocking work off the event loop."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Hashable, Iterator, Optional, TypeVar

import anyio
from fastapi import Request

from fashion_search.search import Searcher

T = TypeVar("T")


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
        self.waiting = 0  # searches waiting for their share
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        share = min(max(0, int(pixels)), self.capacity)
        with self._changed:
            self.waiting += 1
            self._changed.wait_for(lambda: self.used + share <= self.capacity)
            self.waiting -= 1
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

    def get(self, searcher: Searcher) -> dict[str, int]:
        now = time.monotonic()
        if self._value is None or now - self._read_at > self.ttl:
            self._value, self._read_at = searcher.categories(), now
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


def is_catalog_write(method: str, path: str) -> bool:
    """Whether a request changes the catalog: what needs the API key, and may be larger."""
    if method in ("PUT", "DELETE"):
        return path.startswith("/api/products/")
    return method == "POST" and path.rstrip("/") == "/api/products"


__all__ = ["Categories", "LIGHT_THREADS", "LruCache", "PixelBudget", "is_catalog_write", "run_cpu", "run_light"]
