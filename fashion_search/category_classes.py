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
from typing import Any, Iterable, Optional

from fashion_search.garments.taxonomy import GARMENT_CLASSES

# A class must be the main garment of this share of a category's images to count as held by
# it: high enough that a few misparsed photos do not open a category to the wrong queries, low
# enough that a category of tops and knitwear holds both.
MIN_SHARE = 0.15


@dataclass
class CategoryClasses:
    shares: dict[str, dict[str, float]] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)
    min_share: float = MIN_SHARE

    @classmethod
    def learn(cls, rows: Iterable[dict[str, Any]], min_share: float = MIN_SHARE) -> "CategoryClasses":
        """From stored rows (``image_id``, ``category``, ``label``, ``box``): each image's
        largest garment of a known class is its vote."""
        main: dict[str, tuple[float, str, str]] = {}
        for row in rows:
            if row["label"] not in GARMENT_CLASSES:
                continue
            x1, y1, x2, y2 = row["box"]
            area = max(0.0, x2 - x1) * max(0.0, y2 - y1)
            if row["image_id"] not in main or area > main[row["image_id"]][0]:
                main[row["image_id"]] = (area, row["category"], row["label"])
        votes: dict[str, Counter] = defaultdict(Counter)
        for _, category, label in main.values():
            votes[category][label] += 1
        shares = {
            category: {label: round(n / sum(counter.values()), 4) for label, n in counter.most_common()}
            for category, counter in votes.items()
        }
        return cls(shares, {c: sum(v.values()) for c, v in votes.items()}, min_share)

    def classes_of(self, category: str) -> set[str]:
        return {label for label, share in self.shares.get(category, {}).items() if share >= self.min_share}

    def categories_for(self, garment_class: str) -> list[str]:
        """Categories holding ``garment_class`` (empty when none does)."""
        return sorted(c for c in self.shares if garment_class in self.classes_of(c))

    def main_class(self, category: str) -> Optional[str]:
        shares = self.shares.get(category)
        return max(shares, key=shares.get) if shares else None

    def to_dict(self) -> dict[str, Any]:
        return {"shares": self.shares, "images": self.images, "min_share": self.min_share}

    @classmethod
    def from_dict(cls, data: Optional[dict[str, Any]]) -> "CategoryClasses":
        if not data:
            return cls()
        return cls(dict(data.get("shares", {})), dict(data.get("images", {})), float(data.get("min_share", MIN_SHARE)))

    def __bool__(self) -> bool:
        return bool(self.shares)
