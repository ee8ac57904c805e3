"""Near-duplicate catalog images across products: the same photo uploaded twice, or a resized or
re-encoded copy of it, under another product id. For catalog hygiene: such products compete
for the same searches and one of them is usually a mistake.

Each image is represented by its main garment's stored vector (the largest garment), and each
looks up its nearest neighbours through the store's own index: one search per image rather
than all pairs. Images whose main garments are at least ``threshold`` similar are linked, and
linked images form groups, as long as each group's first image is that similar to the first
image of the group it would join (single links alone chain near-alike products into groups of
hundreds: docs/experiments/2026-12-02-near-duplicates.md).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from fashion_search.store import VectorStore
from fashion_search.store.filters import excluding

# Cosine similarity of main-garment vectors above which two images count as copies: the lowest
# measured that joined no different products, with the shipped models on copies of Kaggle
# shots (docs/experiments/2026-12-02-near-duplicates.md).
DEFAULT_THRESHOLD = 0.93
NEIGHBOURS = 8


@dataclass
class DuplicateImage:
    image_id: str
    product_id: str
    category: str
    image: str


@dataclass
class DuplicateGroup:
    """Images that are copies of one another, from at least two products; ``similarity`` is the
    lowest of the links that joined them."""

    images: list[DuplicateImage]
    similarity: float

    @property
    def products(self) -> list[str]:
        return sorted({i.product_id for i in self.images})

    def to_dict(self) -> dict[str, Any]:
        return {
            "similarity": round(self.similarity, 4),
            "products": self.products,
            "images": [asdict(i) for i in self.images],
        }


@dataclass
class DuplicateReport:
    groups: list[DuplicateGroup] = field(default_factory=list)
    images: int = 0
    seconds: float = 0.0
    threshold: float = DEFAULT_THRESHOLD

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "images": self.images,
            "seconds": round(self.seconds, 1),
            "groups": [g.to_dict() for g in self.groups],
        }


class _Links:
    """Union-find over image ids, remembering the weakest link of each group."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.weakest: dict[str, float] = {}

    def find(self, a: str) -> str:
        root = a
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while a != root:  # path compression
            self.parent[a], a = root, self.parent[a]
        return root

    def join(self, a: str, b: str, similarity: float, alike: Callable[[str, str], float], threshold: float) -> None:
        """Link ``a`` and ``b``; their groups merge only when the groups' first images are alike
        too, so that a chain of small steps does not grow one group across a whole category."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            self.weakest[ra] = min(self.weakest.get(ra, 1.0), similarity)
            return
        bridge = similarity if {ra, rb} == {a, b} else alike(ra, rb)
        if bridge < threshold:
            return
        self.parent[rb] = ra
        self.parent.setdefault(ra, ra)
        self.weakest[ra] = min(self.weakest.get(ra, 1.0), self.weakest.get(rb, 1.0), similarity, bridge)


def find_duplicates(
    store: VectorStore,
    threshold: float = DEFAULT_THRESHOLD,
    threads: int = 4,
    progress: Optional[Callable[[int, int], None]] = None,
) -> DuplicateReport:
    """Groups of near-identical images of different products in ``store``, largest first."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold is a cosine similarity in (0, 1], not {threshold}")
    started = time.monotonic()
    main: dict[str, tuple[float, str, np.ndarray]] = {}  # image id -> (area, row id, vector)
    shown: dict[str, DuplicateImage] = {}
    for row in store.iter_rows(with_vectors=True):
        x1, y1, x2, y2 = row["box"]
        area = max(0.0, x2 - x1) * max(0.0, y2 - y1)
        image_id = row["image_id"]
        if image_id not in main or area > main[image_id][0]:
            main[image_id] = (area, f"{image_id}#{row['garment']}", row["vector"])
        shown.setdefault(image_id, DuplicateImage(image_id, row["product_id"], row["category"], row["image"]))
    main_rows = {row_id for _, row_id, _ in main.values()}
    links = _Links()
    done = 0

    def neighbours(image_id: str) -> list[tuple[str, float]]:
        _, _, vector = main[image_id]
        hits = store.search(vector, NEIGHBOURS, where=excluding("product_id", shown[image_id].product_id))
        return [(h.image_id, h.score) for h in hits if h.score >= threshold and h.row_id in main_rows]

    def alike(a: str, b: str) -> float:
        return float(np.dot(main[a][2], main[b][2]))  # stored vectors are unit length

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for image_id, found in zip(main, pool.map(neighbours, main)):
            for other, similarity in found:
                links.join(image_id, other, similarity, alike, threshold)
            done += 1
            if progress is not None and done % 1000 == 0:
                progress(done, len(main))
    members: dict[str, list[DuplicateImage]] = {}
    for image_id in links.parent:
        members.setdefault(links.find(image_id), []).append(shown[image_id])
    groups = [
        DuplicateGroup(sorted(images, key=lambda i: (i.product_id, i.image_id)), links.weakest.get(root, 1.0))
        for root, images in members.items()
        if len({i.product_id for i in images}) > 1
    ]
    groups.sort(key=lambda g: (-g.similarity, -len(g.images), g.images[0].product_id))  # surest first
    return DuplicateReport(groups, len(main), time.monotonic() - started, threshold)
