"""Indexing on a Ray cluster (the ``distributed`` extra): the same run, with images analysed by
Ray workers.

The driver (the process that runs ``fashion-search index --ray``) plans the run exactly as
:func:`~fashion_search.indexing.index_catalog` does (fingerprints, removed images), then hands
the images left to do to Ray Data. Each worker is an actor that creates the models once and
detects and embeds whole batches; the analysed batches stream back to the driver, which writes
each in one atomic store commit. So the store needs to be reachable from the driver only, a
killed run resumes like a local one (finished batches are stored, the rest is redone), and an
image is never stored twice. Workers read the catalog's images by path: on a cluster the
catalog must be on storage every node mounts at the same path.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, TextIO

import numpy as np

from fashion_search.catalog import CatalogItem
from fashion_search.category_classes import CatalogGarmentFilter, CategoryClasses
from fashion_search.errors import IndexMismatchError, MissingDependencyError, UsageError
from fashion_search.index_record import IndexRecord
from fashion_search.indexing import (
    AnalysedBatch,
    IndexReport,
    IndexRunner,
    _Progress,
    analyse_batch,
    finish_index,
    plan_index,
    store_batch,
)
from fashion_search.pipeline import GarmentPipeline, pipeline_from_record
from fashion_search.store import VectorStore

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'fashion-search[distributed]'"
LOCAL = "local"


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide: ``address`` of a running cluster (``ray://host:10001``, ``auto``),
    or :data:`LOCAL` for a Ray instance of this process; ``workers`` actors (default: one per
    ``threads_per_worker`` CPUs of the cluster)."""

    address: str = LOCAL
    workers: Optional[int] = None
    threads_per_worker: Optional[int] = None


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"indexing on Ray needs its extra: {INSTALL_HINT} ({exc})") from None
    return ray


def _start(ray: Any, settings: RaySettings) -> bool:
    """Connect to (or start) Ray; True when this call started it, so it should shut it down."""
    # Ray Data's per-run INFO lines would drown the run's own progress line.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    if ray.is_initialized():
        return False
    # A local instance is this run's own detail: its notices (token authentication on) are noise.
    level = logging.ERROR if settings.address == LOCAL else logging.WARNING
    quiet = {"include_dashboard": False, "logging_level": level, "log_to_driver": True}
    with warnings.catch_warnings():
        # Ray starts its processes with fork+exec; lancedb warns about fork on every one.
        warnings.filterwarnings("ignore", message="lancedb fork support")
        if settings.address == LOCAL:
            # Workers import fashion_search as installed; a source checkout is put on their path.
            path = os.pathsep.join(filter(None, [_source_root(), os.environ.get("PYTHONPATH")]))
            ray.init(runtime_env={"env_vars": {"PYTHONPATH": path}}, **quiet)
        else:
            try:
                ray.init(address=settings.address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UsageError(f"cannot connect to the Ray cluster at {settings.address}: {exc}") from None
    return True


def _source_root() -> str:
    return str(Path(__file__).resolve().parents[1])


def _plan_workers(ray: Any, settings: RaySettings) -> tuple[int, int]:
    """(actors, threads each): by default one actor per two CPUs of the cluster, each with two
    threads (one decodes and detects while the other embeds)."""
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    if settings.workers is not None and settings.workers < 1:
        raise UsageError(f"--workers must be at least 1, not {settings.workers}")
    threads = settings.threads_per_worker
    if settings.workers is None:
        threads = threads or min(2, cpus)
        return max(1, cpus // threads), threads
    return settings.workers, threads or max(1, cpus // settings.workers)


class _GarmentWorker:
    """A Ray actor: the pipeline, created once, analyses batches of catalog images."""

    def __init__(self, record: dict[str, Any], garment_classes: Optional[dict], threads: int) -> None:
        models = IndexRecord.from_dict(record, "this Ray run")
        # Each model keeps to the worker's share of the node's cores.
        self.pipeline = pipeline_from_record(models, threads=threads)
        # A node with other weights at the same paths would mix two models' vectors: refuse.
        self.pipeline.check(models, "this Ray run", "Install the same models on every node of the cluster.")
        self.detector = self.pipeline.detector.for_parallel_use() if threads > 1 else self.pipeline.detector
        self.pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
        # Each worker counts its own votes, seeded by what the index learned before (the
        # filter's early votes matter little: a photo's main garment is always kept).
        self.garment_filter = (
            None if garment_classes is None else CatalogGarmentFilter(CategoryClasses.from_dict(garment_classes))
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pairs = [
            (
                CatalogItem(Path(path), str(product), str(category), json.loads(metadata)),
                str(fingerprint),
            )
            for path, product, category, metadata, fingerprint in zip(
                batch["path"], batch["product_id"], batch["category"], batch["metadata"], batch["fingerprint"]
            )
        ]
        analysed = analyse_batch(pairs, self.pipeline, self.detector, self.pool, self.garment_filter)
        # One output row per batch keeps the batch whole on its way to the store.
        return {"analysed": np.array([pickle.dumps(analysed)], dtype=object), "images": np.array([len(pairs)])}


def index_catalog_on_ray(
    items: Iterable[CatalogItem],
    store: VectorStore,
    pipeline: GarmentPipeline,
    settings: RaySettings = RaySettings(),
    batch_size: int = 64,
    progress: Optional[TextIO] = None,
    prune: bool = True,
    garment_classes: Optional[CategoryClasses] = None,
    all_garments: bool = False,
) -> IndexReport:
    """:func:`~fashion_search.indexing.index_catalog` with the images analysed on Ray.

    ``garment_classes`` seeds each worker's garment filter (see :class:`CatalogGarmentFilter`);
    ``all_garments`` stores every garment instead.
    """
    ray = _import_ray()
    plan = plan_index(items, store, pipeline, prune)
    if not plan.todo:
        return finish_index(store, plan)
    started_ray = _start(ray, settings)
    bar = _Progress(len(plan.todo), progress or sys.stderr)
    try:
        workers, threads = _plan_workers(ray, settings)
        log.info("indexing %d images on Ray: %d workers x %d threads", len(plan.todo), workers, threads)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the run's own progress line says it
        context.execution_options.preserve_order = False
        records = [
            {
                "path": str(item.path),
                "product_id": item.product_id,
                "category": item.category,
                "metadata": json.dumps(item.metadata, default=str),
                "fingerprint": fingerprint,
            }
            for item, fingerprint in plan.todo
        ]
        blocks = max(workers, math.ceil(len(records) / batch_size))
        dataset = ray.data.from_items(records, override_num_blocks=blocks).map_batches(
            _GarmentWorker,
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=threads,
            fn_constructor_kwargs={
                "record": pipeline.record().to_dict(),
                "garment_classes": None if all_garments else (garment_classes or CategoryClasses()).to_dict(),
                "threads": threads,
            },
        )
        for out in dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
            for payload, images in zip(out["analysed"], out["images"]):
                analysed: AnalysedBatch = pickle.loads(payload)
                store_batch(store, analysed, plan.report)
                bar.update(int(images))
    except Exception as exc:
        if isinstance(exc, IndexMismatchError) or "IndexMismatchError" in str(exc):
            raise IndexMismatchError(_cause(exc)) from None
        raise
    finally:
        bar.close()
        if started_ray:
            ray.shutdown()
    return finish_index(store, plan)


@dataclass(frozen=True)
class RayRunner(IndexRunner):
    """Images analysed by workers of a Ray cluster (see the module's description)."""

    settings: RaySettings = RaySettings()

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
        return index_catalog_on_ray(
            items,
            store,
            pipeline,
            self.settings,
            batch_size=batch_size,
            progress=progress,
            prune=prune,
            garment_classes=garment_classes,
            all_garments=garment_classes is None,
        )


def _cause(exc: BaseException) -> str:
    """The message of the error a worker raised, without Ray's wrapping."""
    text = str(exc)
    marker = "IndexMismatchError: "
    return text[text.rfind(marker) + len(marker) :].strip() if marker in text else text
