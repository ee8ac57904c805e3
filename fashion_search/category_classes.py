"""Which garment classes each catalog category holds, learned from the index itself.

Catalog categories are whatever the retailer named its folders or CSV column ("Atasan",
"Tshirts", "Women/Skirts"), so no table from category names to garment classes can be written in
advance. Instead, every catalog image votes with its main garment (the largest one the parser
found): a category whose images are mostly parsed as skirts holds skirts. Search then restricts a
skirt in the query photo to skirts found in skirt-holding categories, so neither a blouse nor the
skirt a model happens to wear in a blouse photo comes back.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Collection, Iterable, Iterator, NamedTuple, Optional, Protocol, Sequence, Union

from fashion_search.garments import Garment
from fashion_search.garments.taxonomy import GARMENT_CLASSES, lookalikes

# A class must be the main garment of this share of a category's images to count as held by
# it: high enough that a few misparsed photos do not open a category to the wrong queries, low
# enough that a category of tops and knitwear holds both.
MIN_SHARE = 0.15
# A class that is no lookalike of the category's main class must be the main garment of this
# share of its images. A model wears trousers in a tenth to a sixth of the photos of tops, and they
# are then the photo's largest garment, while the tops' own votes split among four lookalike
# classes: at 0.15 alone, whether a tops category held trousers (and had them stand for its
# photos) hung on a percentage point (13% with the shipped parser, 16% with another). A second
# kind of product in one category (a quarter or more of its photos) still counts.
MIN_SHARE_UNRELATED = 0.25


class LabelledBox(Protocol):
    """A garment as found (:class:`Garment`) or as stored (:class:`StoredGarment`)."""

    label: str
    box: Sequence[float]


class StoredGarment(NamedTuple):
    label: str
    box: Sequence[float]


def _area(box: Iterable[float]) -> float:
    x1, y1, x2, y2 = box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def main_garment(garments: Sequence[LabelledBox], held: Collection[str] = ()) -> Optional[int]:
    """Index of the garment a catalog photo is a photo of; None when there is none.

    The one rule, wherever a photo's product must be told from what else it shows: the largest
    garment (by box) of a class its category holds (``held``); else the largest of any garment
    class; else the largest garment (a model-free detector's single item). Indexing votes with
    it, ``held`` empty since the category's classes are what the votes decide; evaluation
    takes it, with the category's learned classes, as the garment a catalog image queries with.
    Boxes, not mask pixels: measured, mask pixels did not change which product wins (see
    docs/experiments/2026-11-27-worn-catalog-photos.md).
    """
    if not garments:
        return None
    return max(
        range(len(garments)),
        key=lambda i: (garments[i].label in held, garments[i].label in GARMENT_CLASSES, _area(garments[i].box)),
    )


def _votes(rows: Iterable[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """``(category, class)`` of each image's main garment, for images whose main garment is
    of a garment class, from stored rows (``image_id``, ``category``, ``label``, ``box``)."""
    images: dict[str, tuple[str, list[StoredGarment]]] = {}
    for row in rows:
        images.setdefault(row["image_id"], (row["category"], []))[1].append(StoredGarment(row["label"], row["box"]))
    for category, garments in images.values():
        main = garments[main_garment(garments)]  # type: ignore[index]
        if main.label in GARMENT_CLASSES:
            yield category, main.label


@dataclass
class CategoryClasses:
    shares: dict[str, dict[str, float]] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)
    min_share: float = MIN_SHARE
    min_share_unrelated: float = MIN_SHARE_UNRELATED

    @classmethod
    def learn(cls, rows: Iterable[dict[str, Any]], min_share: float = MIN_SHARE) -> "CategoryClasses":
        """From stored rows (``image_id``, ``category``, ``label``, ``box``): each image votes
        with its :func:`main_garment` when that is of a garment class."""
        votes: dict[str, Counter] = defaultdict(Counter)
        for category, label in _votes(rows):
            votes[category][label] += 1
        shares = {
            category: {label: round(n / sum(counter.values()), 4) for label, n in counter.most_common()}
            for category, counter in votes.items()
        }
        return cls(shares, {c: sum(v.values()) for c, v in votes.items()}, min_share)

    def updated(
        self, removed: Iterable[dict[str, Any]] = (), added: Iterable[dict[str, Any]] = ()
    ) -> "CategoryClasses":
        """These classes with the votes of ``removed`` rows taken back and those of ``added``
        rows counted: what one catalog write changes, without a scan of the store (an index
        run re-learns everything)."""
        counts: dict[str, Counter] = defaultdict(Counter)
        for category, shares in self.shares.items():
            for label, share in shares.items():
                counts[category][label] = share * self.images.get(category, 0)
        for rows, sign in ((removed, -1), (added, 1)):
            for category, label in _votes(rows):
                counts[category][label] += sign
        shares, images = {}, {}
        for category, counter in counts.items():
            kept = {label: n for label, n in counter.items() if n > 0.5}
            total = sum(kept.values())
            if total > 0.5:
                ordered = sorted(kept.items(), key=lambda item: -item[1])
                shares[category] = {label: round(n / total, 4) for label, n in ordered}
                images[category] = round(total)
        return CategoryClasses(shares, images, self.min_share, self.min_share_unrelated)

    def classes_of(self, category: str) -> set[str]:
        """The classes ``category`` holds: its main class (most votes) and that class's lookalikes
        with ``min_share`` of the votes, any other class with ``min_share_unrelated``."""
        main = self.main_class(category)
        if main is None:
            return set()
        near = lookalikes(main)
        return {
            label
            for label, share in self.shares[category].items()
            if share >= (self.min_share if label in near else self.min_share_unrelated)
        }

    def categories_for(self, garment_class: str) -> list[str]:
        """Categories holding ``garment_class`` (empty when none does)."""
        return sorted(c for c in self.shares if garment_class in self.classes_of(c))

    def search_filter(
        self, garment_class: str, category: Optional[str] = None
    ) -> tuple[Optional[Union[str, list[str]]], Optional[list[str]]]:
        """The store filters ``(categories, labels)`` for class-aware search of a garment of
        ``garment_class``: the categories that hold its class, and in them the garments of its
        class or of a lookalike class (``taxonomy.LOOKALIKE_PAIRS``) that those categories hold.

        Why not its own class alone: the parser often names one product differently in two
        photos (a cardigan is knitwear in one view and outerwear in the next; a long top is a
        dress), and requiring equal labels lost the product itself: same-product R@1 on Zalora
        was 0.64 against 0.83. Why not every class the categories hold: categories the parser
        has no class for (cufflinks, gift sets) hold a scatter of classes, and a bag would meet
        their shoes. An explicit ``category`` wins over the learned ones.
        """
        if garment_class not in GARMENT_CLASSES:
            return category, None
        where: Optional[Union[str, list[str]]] = category
        if where is None:
            where = self.categories_for(garment_class) or None
        held = self.classes_of(where) if isinstance(where, str) else set().union(*map(self.classes_of, where or []))
        return where, sorted((lookalikes(garment_class) & held) | {garment_class})

    def main_class(self, category: str) -> Optional[str]:
        shares = self.shares.get(category)
        return max(shares, key=shares.get) if shares else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "shares": self.shares,
            "images": self.images,
            "min_share": self.min_share,
            "min_share_unrelated": self.min_share_unrelated,
        }

    @classmethod
    def from_dict(cls, data: Optional[dict[str, Any]]) -> "CategoryClasses":
        if not data:
            return cls()
        return cls(
            dict(data.get("shares", {})),
            dict(data.get("images", {})),
            float(data.get("min_share", MIN_SHARE)),
            float(data.get("min_share_unrelated", MIN_SHARE_UNRELATED)),
        )

    def __bool__(self) -> bool:
        return bool(self.shares)


class CatalogGarmentFilter:
    """Chooses which garments of a catalog photo are worth indexing: the photo's main garment, and
    any other garment of a class its category holds (every garment when the main one is of a
    class the category does not hold). The jeans a model wears in a T-shirt's photo
    are left out: class-aware search would never show them (trousers are searched in the
    categories that hold trousers), and with ``same_class`` off they would return the T-shirt for
    a query about jeans. It also spares embedding two or three garments per catalog photo.

    Votes are counted as the run goes, seeded with what earlier runs learned; the category's
    classes early in a run rest on few votes, which matters little since the main garment is
    always kept and it is the one that votes.
    """

    def __init__(self, learned: Optional[CategoryClasses] = None, min_share: float = MIN_SHARE) -> None:
        self.min_share = min_share
        self.votes: dict[str, Counter] = defaultdict(Counter)
        if learned:
            for category, shares in learned.shares.items():
                images = learned.images.get(category, 0)
                for label, share in shares.items():
                    self.votes[category][label] = round(share * images)

    def select(self, category: str, garments: list[Garment]) -> list[int]:
        """Indices of the garments to index, in their order; records the photo's vote."""
        main = main_garment(garments)
        if main is None or garments[main].label not in GARMENT_CLASSES:
            return list(range(len(garments)))
        votes = self.votes[category]
        votes[garments[main].label] += 1
        total = sum(votes.values())
        # Half the lower search-time share, whatever the class: votes early in a run are few,
        # and a garment left out now cannot be searched later should its class make the cut by
        # the end of the run.
        held = {label for label, n in votes.items() if n / total >= self.min_share / 2}
        if garments[main].label not in held:
            # The photo disagrees with its category (a back view, a detail, a misparse): which of
            # its garments is the product cannot be told, so all are kept.
            return list(range(len(garments)))
        return [i for i, g in enumerate(garments) if i == main or g.label not in GARMENT_CLASSES or g.label in held]
