"""Rows, queries and exact answers shared by the store tests."""

from __future__ import annotations

import threading
from typing import Callable, Optional

import numpy as np

from fashion_search.store import VectorRow, VectorStore

DIM = 16


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def row(
    image_id: str,
    garment: int = 0,
    vector: Optional[np.ndarray] = None,
    product_id: Optional[str] = None,
    category: str = "tops",
    label: str = "shirt",
    fingerprint: str = "fp1",
    seed: int = 0,
    dim: int = DIM,
) -> VectorRow:
    if vector is None:
        vector = np.random.default_rng(abs(hash((image_id, garment, seed))) % 2**32).standard_normal(dim)
    return VectorRow(
        image_id=image_id,
        garment=garment,
        image=f"/catalog/{image_id}.jpg",
        product_id=product_id or f"prod-{image_id}",
        category=category,
        label=label,
        score=0.75,
        box=(0.1, 0.2, 0.9, 1.0),
        fingerprint=fingerprint,
        metadata={"title": f"title of {image_id}", "price": 10},
        vector=np.asarray(vector, np.float32),
    )


def random_rows(
    n: int, seed: int = 0, categories=("tops", "shoes", "bags"), labels=("shirt", "boot"), dim: int = DIM
) -> list[VectorRow]:
    rng = np.random.default_rng(seed)
    return [
        row(
            f"img{i:04d}",
            vector=rng.standard_normal(dim),
            product_id=f"p{i // 2:04d}",
            category=categories[i % len(categories)],
            label=labels[(i // 3) % len(labels)],
        )
        for i in range(n)
    ]


def exact_top(
    rows: list[VectorRow], query: np.ndarray, k: int, keep: Callable[[VectorRow], bool] = lambda r: True
) -> list[str]:
    kept = [r for r in rows if keep(r)]
    sims = np.stack([unit(r.vector) for r in kept]) @ unit(query)
    return [kept[i].row_id for i in np.argsort(-sims)[:k]]


def vector_indexes(store: VectorStore) -> list[str]:
    """Names of the store's approximate (vector) indexes."""
    from fashion_search.store.lance import LanceVectorStore

    if isinstance(store, LanceVectorStore):
        return [i.name for i in store._open_garments().list_indices() if "vector" in i.columns]
    with store._direct() as conn:  # type: ignore[attr-defined]
        found = conn.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = to_regclass(%s) AND a.amname = 'hnsw'",
            [store.table],  # type: ignore[attr-defined]
        ).fetchall()
    return [name for (name,) in found]


def errors_of_threads(work: Callable[[int], None], threads: int) -> list[BaseException]:
    """Run ``work(0)`` .. ``work(threads - 1)`` at once, each on its own thread; what they raised."""
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:  # noqa: BLE001 (reported to the caller)
            errors.append(exc)

    started = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    return errors
