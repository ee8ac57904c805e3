"""Building and refreshing the index from a catalog, incrementally and interruptibly.

Each batch of images is written in one atomic store commit, so a run that is interrupted
(Ctrl-C, kill, power loss) leaves only whole images behind; the next run compares
fingerprints and does only what is left.
"""

from __future__ import annotations

import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Sequence, TextIO

from PIL import Image

from fashion_search.catalog import CatalogItem
from fashion_search.category_classes import CatalogGarmentFilter
from fashion_search.errors import ImageError
from fashion_search.garments import Garment, GarmentDetector
from fashion_search.images import load_image
from fashion_search.pipeline import GarmentPipeline
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


def _check_manifest(store: VectorStore, pipeline: GarmentPipeline) -> None:
    """Record the pipeline's models in a new index; refuse to add to an index built with others."""
    manifest = store.read_manifest()
    if not manifest:
        store.write_manifest(pipeline.manifest())
        return
    pipeline.check(
        manifest,
        store.uri,
        "Index into a new --db, or rebuild this one with these models (`fashion-search index ... --rebuild`).",
    )


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
) -> tuple[CatalogItem, Optional[list[Image.Image]], list[Garment], str]:
    """Decode, detect and crop one image. Only the crops are kept, not the full image, so a
    batch of large photos does not hold gigabytes of pixels."""
    try:
        image = load_image(item.path)
        garments = pipeline.detect(image, detector)
        return item, pipeline.crop_garments(image, garments), garments, ""
    except ImageError as exc:
        return item, None, [], str(exc)
    except Exception as exc:  # one bad file must never abort a catalog run
        log.exception("unexpected error reading %s", item.path)
        return item, None, [], f"{type(exc).__name__}: {exc}"


def _batches(seq: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


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
    of them when None).
    """
    started = time.monotonic()
    items = list(items)
    report = IndexReport(total=len(items))
    _check_manifest(store, pipeline)

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

    if prune:
        # A file that exists but failed to stat stays in the index rather than vanishing.
        current = {item.image_id for item in items}
        gone = [image_id for image_id in stored if image_id not in current]
        if gone:
            report.removed = store.delete_images(gone)

    bar = _Progress(len(todo), progress or sys.stderr)
    fingerprints = {item.image_id: fp for item, fp in todo}
    detector = pipeline.detector.for_parallel_use() if workers > 1 and todo else pipeline.detector
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for batch in _batches(todo, batch_size):
                # Decoding and detection run in threads (PIL releases the GIL) while the
                # embedder, itself multi-threaded, works on whole batches.
                loaded = list(pool.map(lambda pair: _load(pair[0], pipeline, detector), batch))
                good = [(item, crops, garments) for item, crops, garments, _ in loaded if crops is not None]
                if garment_filter is not None:
                    chosen = []
                    for item, crops, garments in good:
                        keep = garment_filter.select(item.category, garments)
                        chosen.append((item, [crops[i] for i in keep], [garments[i] for i in keep]))
                    good = chosen
                for item, crops, _, error in loaded:
                    if crops is None:
                        report.failed.append((str(item.path), error))
                rows: list[VectorRow] = []
                if good:
                    vectors = pipeline.embed_crops([crops for _, crops, _ in good])
                    for (item, _, garments), vecs in zip(good, vectors):
                        for n, (garment, vector) in enumerate(zip(garments, vecs)):
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
                    store.upsert_images(rows)
                    report.indexed += len(good)
                    report.garments += len(rows)
                bar.update(len(batch))
    finally:
        bar.close()
        report.seconds = time.monotonic() - started
    if report.indexed or report.removed:
        store.optimize()
    return report
