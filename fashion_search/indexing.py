"""Building and refreshing the index from a catalog, incrementally and interruptibly.

Each batch of images is written in one atomic store commit, so a run that is interrupted
(Ctrl-C, kill, power loss) leaves only whole images behind; the next run compares
fingerprints and does only what is left.

Who analyses the images is an :class:`IndexRunner`: :class:`LocalRunner` in this process, or
:class:`~fashion_search.indexing_ray.RayRunner` on a Ray cluster. Both plan and store the same
way (:func:`plan_index`, :func:`analyse_batch`, :func:`store_batch`), so the write side does not
know which one runs.
"""

from __future__ import annotations

import logging
import sys
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Sequence, TextIO

from fashion_search.catalog import CatalogItem
from fashion_search.catalog.uploads import UPLOAD_FINGERPRINT
from fashion_search.category_classes import CatalogGarmentFilter, CategoryClasses
from fashion_search.errors import ImageError
from fashion_search.garments import GarmentDetector
from fashion_search.index_record import IndexRecord, update_record
from fashion_search.pipeline import GarmentPipeline, PreparedImage
from fashion_search.store import VectorRow, VectorStore

log = logging.getLogger(__name__)


@dataclass
class IndexReport:
    total: int = 0
    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    garments: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "total": self.total,
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "garments": self.garments,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
        }


def record_models(store: VectorStore, pipeline: GarmentPipeline) -> IndexRecord:
    """Record the pipeline's models in a new index; refuse to add to an index built with others.
    One atomic update: of two writers starting on a new index, one records and the other checks."""

    def change(record: Optional[IndexRecord]) -> Optional[IndexRecord]:
        if record is None:
            return pipeline.record()
        pipeline.check(
            record,
            store.uri,
            "Index into a new --db, or rebuild this one with these models (`fashion-search index ... --rebuild`).",
        )
        return None

    recorded = update_record(store, change)
    assert recorded is not None
    return recorded


class _Progress:
    """A bar on a terminal, periodic plain log lines otherwise (CI logs, pipes)."""

    def __init__(self, total: int, stream: TextIO, interval: float = 10.0) -> None:
        self.total, self.stream, self.interval = total, stream, interval
        self.done = 0
        self.started = self.last = time.monotonic()
        self.bar = None
        if total and stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", file=stream, dynamic_ncols=True, smoothing=0.1)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.interval or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            print(
                f"indexed {self.done}/{self.total} images ({rate:.1f} img/s, ETA {eta:.0f} s)",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _load(
    item: CatalogItem, pipeline: GarmentPipeline, detector: GarmentDetector
) -> tuple[CatalogItem, Optional[PreparedImage], str]:
    """One catalog image prepared (decoded, its garments found and cut out), or why not."""
    try:
        return item, pipeline.prepare(item.path, detector), ""
    except ImageError as exc:
        return item, None, str(exc)
    except Exception as exc:  # one bad file must never abort a catalog run
        log.exception("unexpected error reading %s", item.path)
        return item, None, f"{type(exc).__name__}: {exc}"


def _batches(seq: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


@dataclass
class IndexPlan:
    """What an index run must do, decided from the catalog and the store's fingerprints."""

    report: IndexReport
    todo: list[tuple[CatalogItem, str]]  # (image, its fingerprint): new or changed images
    started: float


def plan_index(
    items: Iterable[CatalogItem], store: VectorStore, pipeline: GarmentPipeline, prune: bool = True
) -> IndexPlan:
    """Check the store's models, compare fingerprints, drop removed images (with ``prune``),
    and list the images left to analyse. Shared by the in-process and the Ray indexers."""
    started = time.monotonic()
    problems = list(getattr(items, "problems", []))  # what the catalog could not list
    items = list(items)
    report = IndexReport(total=len(items), failed=problems)
    record_models(store, pipeline)

    stored = store.fingerprints()
    todo: list[tuple[CatalogItem, str]] = []
    for item in items:
        try:
            fingerprint = item.fingerprint()
        except OSError as exc:
            report.failed.append((str(item.path), f"cannot read file: {exc.strerror or exc}"))
            continue
        if stored.get(item.image_id) == fingerprint:
            report.unchanged += 1
        else:
            todo.append((item, fingerprint))

    if prune and problems:
        # A folder that could not be read lists none of its images: pruning would drop them.
        log.warning("not removing missing images from the index: %d catalog entries could not be read", len(problems))
    elif prune:
        # A file that exists but failed to stat stays in the index rather than vanishing.
        # Images written through the API are not this catalog's to remove.
        current = {item.image_id for item in items}
        gone = [
            image_id
            for image_id, fingerprint in stored.items()
            if image_id not in current and not fingerprint.startswith(UPLOAD_FINGERPRINT)
        ]
        if gone:
            report.removed = store.delete_images(gone)
    return IndexPlan(report, todo, started)


@dataclass
class AnalysedBatch:
    """One batch of images analysed: the rows to store, and the images that failed."""

    rows: list[VectorRow]
    indexed: list[str]  # image ids analysed (an image may have no rows only if filtered empty)
    failed: list[tuple[str, str]]  # (path, reason)


def analyse_batch(
    batch: Sequence[tuple[CatalogItem, str]],
    pipeline: GarmentPipeline,
    detector: GarmentDetector,
    pool: Optional[ThreadPoolExecutor] = None,
    garment_filter: Optional[CatalogGarmentFilter] = None,
) -> AnalysedBatch:
    """Decode, detect, choose and embed the garments of a batch of ``(image, fingerprint)``."""
    # Decoding and detection run in threads (PIL releases the GIL) while the embedder,
    # itself multi-threaded, works on whole batches.
    load = lambda pair: _load(pair[0], pipeline, detector)  # noqa: E731
    loaded = list(pool.map(load, batch) if pool is not None else map(load, batch))
    fingerprints = {item.image_id: fp for item, fp in batch}
    good = [(item, prepared) for item, prepared, _ in loaded if prepared is not None]
    failed = [(str(item.path), error) for item, prepared, error in loaded if prepared is None]
    if garment_filter is not None:
        for item, prepared in good:
            keep = garment_filter.select(item.category, prepared.garments)
            prepared.garments = [prepared.garments[i] for i in keep]
            prepared.crops = [prepared.crops[i] for i in keep]
    rows: list[VectorRow] = []
    if good:
        vectors = pipeline.embed_prepared([prepared for _, prepared in good])
        for (item, prepared), vecs in zip(good, vectors):
            for n, (garment, vector) in enumerate(zip(prepared.garments, vecs)):
                rows.append(
                    VectorRow(
                        image_id=item.image_id,
                        garment=n,
                        image=str(item.path),
                        product_id=item.product_id,
                        category=item.category,
                        label=garment.label,
                        score=float(garment.score),
                        box=tuple(float(v) for v in garment.box),  # type: ignore[arg-type]
                        fingerprint=fingerprints[item.image_id],
                        metadata=item.metadata,
                        vector=vector,
                    )
                )
    return AnalysedBatch(rows, [item.image_id for item, _ in good], failed)


def store_batch(store: VectorStore, batch: AnalysedBatch, report: IndexReport) -> None:
    """Write one analysed batch in one atomic store commit and count it."""
    report.failed.extend(batch.failed)
    if batch.rows:
        store.upsert_images(batch.rows)
    report.indexed += len(batch.indexed)
    report.garments += len(batch.rows)


def finish_index(store: VectorStore, plan: IndexPlan) -> IndexReport:
    """Time the run and bring the store's indexes up to date when anything changed."""
    report = plan.report
    report.seconds = time.monotonic() - plan.started
    if report.indexed or report.removed:
        store.optimize()
    elif store.needs_optimize():
        log.warning("%s: building the search indexes an earlier run left unbuilt", getattr(store, "uri", store))
        store.optimize()
    return report


def index_catalog(
    items: Iterable[CatalogItem],
    store: VectorStore,
    pipeline: GarmentPipeline,
    batch_size: int = 64,
    workers: int = 2,
    progress: Optional[TextIO] = None,
    prune: bool = True,
    garment_filter: Optional[CatalogGarmentFilter] = None,
) -> IndexReport:
    """Bring ``store`` in line with ``items``: embed new and changed images, drop removed ones.

    ``prune=False`` keeps images that are no longer in ``items`` (for adding a second catalog
    to the same index). ``garment_filter`` picks which garments of each photo are stored (all
    of them when None). ``workers`` threads decode and detect.
    """
    plan = plan_index(items, store, pipeline, prune)
    bar = _Progress(len(plan.todo), progress or sys.stderr)
    detector = pipeline.detector.for_parallel_use() if workers > 1 and plan.todo else pipeline.detector
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for batch in _batches(plan.todo, batch_size):
                store_batch(store, analyse_batch(batch, pipeline, detector, pool, garment_filter), plan.report)
                bar.update(len(batch))
    finally:
        bar.close()
    return finish_index(store, plan)


class IndexRunner(ABC):
    """Who analyses a run's images: the write side is given one and calls :meth:`run`."""

    @abstractmethod
    def run(
        self,
        items: Iterable[CatalogItem],
        store: VectorStore,
        pipeline: GarmentPipeline,
        garment_classes: Optional[CategoryClasses],
        batch_size: int = 64,
        prune: bool = True,
        progress: Optional[TextIO] = None,
    ) -> IndexReport:
        """Bring ``store`` in line with ``items`` (see :func:`index_catalog`); ``garment_classes``
        seeds the choice of garments stored per photo (:class:`CatalogGarmentFilter`), None
        stores every garment found."""


@dataclass(frozen=True)
class LocalRunner(IndexRunner):
    """Images analysed in this process: ``workers`` threads decode and detect while the
    embedder works on whole batches."""

    workers: int = 2

    def run(
        self,
        items: Iterable[CatalogItem],
        store: VectorStore,
        pipeline: GarmentPipeline,
        garment_classes: Optional[CategoryClasses],
        batch_size: int = 64,
        prune: bool = True,
        progress: Optional[TextIO] = None,
    ) -> IndexReport:
        garment_filter = None if garment_classes is None else CatalogGarmentFilter(garment_classes)
        return index_catalog(items, store, pipeline, batch_size, self.workers, progress, prune, garment_filter)
