"""Text search quality, measured through the search code (:meth:`Searcher.search_text`).

On a gallery index of labelled products (Kaggle's text-validation products:
``splits/kaggle_text_validation_ids.txt``):

* name queries (Marqo's KAGL text-to-image protocol): each distinct display name queries the
  gallery; a hit is any product of exactly that name; R@1, R@10 and MRR@10;
* attribute queries: "<colour> <article type>" for every pair with at least 5 products in the
  gallery, scored as precision at min(10, products of the pair); with the labels' own colours,
  and with basic colour terms (``taxonomy.KAGGLE_BASIC_COLOUR``);
* paraphrases: queries in words the names never use, each with the basic colour and article
  type it means (``splits/kaggle_text_paraphrases.csv``); a query passes when at least 5 of its
  top 10 products have both;
* composed colourways: a product's photo with the words "in <colour>" of another colourway of
  its style (same name once colour words are removed, same article type): R@10 of that
  colourway among the results of the photo's main garment, and the same for the photo alone.

Products' labels come from their metadata in the index (``articleType``, ``baseColour``,
``productDisplayName``), as a catalog CSV gives them.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from fashion_search.garments.taxonomy import KAGGLE_BASIC_COLOUR
from fashion_search.search import Searcher

MIN_PAIR_PRODUCTS = 5


@dataclass
class LabelledProduct:
    product_id: str
    name: str
    article_type: str
    colour: str
    image: str = ""

    @property
    def basic_colour(self) -> Optional[str]:
        return KAGGLE_BASIC_COLOUR.get(self.colour)


@dataclass
class TextReport:
    figures: dict[str, Any] = field(default_factory=dict)
    per_query: list[dict[str, Any]] = field(default_factory=list)  # {"key", "metric", "value"}

    def to_dict(self) -> dict[str, Any]:
        return dict(self.figures)


def gallery_products(searcher: Searcher) -> dict[str, LabelledProduct]:
    """Every product of the index with its labels, from its stored metadata."""
    products = {}
    for row in searcher.rows(with_vectors=False):
        meta = row["metadata"]
        products.setdefault(
            row["product_id"],
            LabelledProduct(
                row["product_id"],
                " ".join(str(meta.get("productDisplayName", "")).split()),
                str(meta.get("articleType", row["category"])),
                str(meta.get("baseColour", "")),
                row["image"],
            ),
        )
    return products


def _ranked(searcher: Searcher, text: str, k: int) -> list[str]:
    return [r.product_id for r in searcher.search_text(text, k=k).results or []]


def name_queries(searcher: Searcher, products: dict[str, LabelledProduct], report: TextReport, k: int = 10) -> None:
    named: dict[str, set[str]] = defaultdict(set)
    shown: dict[str, str] = {}
    for p in products.values():
        if p.name:
            named[p.name.lower()].add(p.product_id)
            shown.setdefault(p.name.lower(), p.name)
    ranks = []
    for key, relevant in named.items():
        ranked = _ranked(searcher, shown[key], k)
        rank = next((n for n, pid in enumerate(ranked, 1) if pid in relevant), None)
        ranks.append(rank)
        for cut in (1, 10):
            report.per_query.append(
                {"key": key, "metric": f"name R@{cut}", "value": float(rank is not None and rank <= cut)}
            )
        report.per_query.append({"key": key, "metric": "name MRR@10", "value": 1.0 / rank if rank else 0.0})
    report.figures["names"] = {
        "queries": len(ranks),
        "R@1": _mean(r == 1 for r in ranks),
        "R@10": _mean(r is not None for r in ranks),
        "MRR@10": _mean(1.0 / r if r else 0.0 for r in ranks),
        "R@10_95ci": _interval([float(r is not None) for r in ranks]),
    }


def attribute_queries(
    searcher: Searcher, products: dict[str, LabelledProduct], report: TextReport, basic: bool, k: int = 10
) -> None:
    pairs: dict[tuple[str, str], set[str]] = defaultdict(set)
    for p in products.values():
        colour = p.basic_colour if basic else p.colour
        if colour:
            pairs[(colour, p.article_type)].add(p.product_id)
    values = []
    name = "basic colours" if basic else "label colours"
    for (colour, article_type), relevant in sorted(pairs.items()):
        if len(relevant) < MIN_PAIR_PRODUCTS:
            continue
        cut = min(k, len(relevant))
        ranked = _ranked(searcher, f"{colour.lower()} {article_type}", cut)
        value = sum(pid in relevant for pid in ranked) / cut
        values.append(value)
        report.per_query.append({"key": f"{colour} {article_type}", "metric": f"attribute P ({name})", "value": value})
    report.figures[f"attributes ({name})"] = {"queries": len(values), "precision": _mean(values)}


def paraphrase_queries(
    searcher: Searcher, products: dict[str, LabelledProduct], paraphrases: Path, report: TextReport, k: int = 10
) -> None:
    with open(paraphrases, newline="", encoding="utf-8") as fh:
        queries = list(csv.DictReader(fh))
    results = []
    for q in queries:
        ranked = _ranked(searcher, q["query"], k)
        good = sum(
            products[pid].basic_colour == q["colour"] and products[pid].article_type == q["article_type"]
            for pid in ranked
        )
        results.append({"query": q["query"], "means": f"{q['colour']} {q['article_type']}", "of_top_10": good})
        report.per_query.append({"key": q["query"], "metric": "paraphrase hits of 10", "value": float(good)})
    report.figures["paraphrases"] = {
        "queries": len(results),
        "passing (5 of top 10 or more)": sum(r["of_top_10"] >= 5 for r in results),
        "mean of top 10 right": _mean(r["of_top_10"] for r in results),
        "each": results,
    }


def style_of(product: LabelledProduct) -> str:
    """A product's name without its colour words: 'Puma Men Grey Tshirts' -> 'puma men tshirts'."""
    drop = set(product.colour.lower().split())
    return " ".join(word for word in product.name.lower().split() if word not in drop)


def composed_queries(searcher: Searcher, products: dict[str, LabelledProduct], report: TextReport, k: int = 10) -> None:
    """Each product of a style sold in several basic colours, photographed, with the words of
    another colourway's colour ("in red"): R@10 of that colourway, against the photo alone."""
    from fashion_search.category_classes import main_garment

    styles: dict[str, list[LabelledProduct]] = defaultdict(list)
    for p in products.values():
        if p.basic_colour and p.image:
            styles[(style_of(p), p.article_type)].append(p)  # type: ignore[index]
    with_words, alone = [], []
    for members in styles.values():
        for query in members:
            for target in members:
                if target.basic_colour == query.basic_colour:
                    continue
                outcomes = []
                for text in (f"in {target.basic_colour}", None):
                    result = searcher.search(query.image, k=k, text=text)
                    garments = [g.garment for g in result.garments]
                    chosen = result.garments[main_garment(garments)] if garments else None
                    ranked = [r.product_id for r in chosen.results] if chosen else []
                    outcomes.append(float(target.product_id in ranked))
                with_words.append(outcomes[0])
                alone.append(outcomes[1])
                key = f"{query.product_id}->{target.product_id}"
                report.per_query.append({"key": key, "metric": "composed R@10", "value": outcomes[0]})
                report.per_query.append({"key": key, "metric": "colourway R@10, photo alone", "value": outcomes[1]})
    report.figures["composed colourways"] = {
        "queries": len(with_words),
        "R@10 with the words": _mean(with_words),
        "R@10_95ci": _interval(with_words),
        "R@10 of the photo alone": _mean(alone),
    }


def evaluate_text(searcher: Searcher, paraphrases: Optional[Path] = None) -> TextReport:
    """Every text measure on the index ``searcher`` holds (see the module's description)."""
    report = TextReport()
    products = gallery_products(searcher)
    report.figures["gallery_products"] = len(products)
    name_queries(searcher, products, report)
    for basic in (False, True):
        attribute_queries(searcher, products, report, basic)
    if paraphrases is not None:
        paraphrase_queries(searcher, products, paraphrases, report)
    composed_queries(searcher, products, report)
    return report


def _mean(values: Iterable[Any]) -> float:
    values = [float(v) for v in values]
    return round(float(np.mean(values)), 4) if values else 0.0


def _interval(values: Sequence[float], draws: int = 2000) -> list[float]:
    """95% bootstrap interval of a mean over queries (seeded)."""
    if not values:
        return [0.0, 0.0]
    rng = np.random.default_rng(0)
    array = np.asarray(values)
    means = array[rng.integers(0, len(array), (draws, len(array)))].mean(1)
    return [round(float(np.quantile(means, 0.025)), 4), round(float(np.quantile(means, 0.975)), 4)]


__all__ = ["TextReport", "evaluate_text", "gallery_products"]
