import json
from pathlib import Path

import pytest
from PIL import Image

from fashion_search.catalog import load_catalog
from fashion_search.category_classes import CatalogGarmentFilter, CategoryClasses
from fashion_search.engine import SearchEngine
from fashion_search.garments import Garment, decode_mask
from fashion_search.pipeline import Component
from tests.helpers import COLOUR_CLASSES


def _row(image_id, category, label, box):
    return {"image_id": image_id, "category": category, "label": label, "box": box}


def test_each_image_votes_with_its_largest_garment():
    rows = [
        _row("a", "Tops", "top", (0, 0, 10, 10)),
        _row("a", "Tops", "trousers", (0, 10, 10, 14)),
        _row("b", "Tops", "top", (0, 0, 10, 10)),
        _row("c", "Tops", "knitwear", (0, 0, 10, 10)),
        _row("d", "Skirts", "skirt", (0, 0, 10, 10)),
        _row("e", "Misc", "image", (0, 0, 10, 10)),  # a model-free label names no class
    ]
    learned = CategoryClasses.learn(rows, min_share=0.3)
    assert learned.shares["Tops"] == {"top": pytest.approx(2 / 3, abs=1e-3), "knitwear": pytest.approx(1 / 3, abs=1e-3)}
    assert learned.classes_of("Tops") == {"top", "knitwear"}
    assert learned.categories_for("skirt") == ["Skirts"]
    assert learned.categories_for("trousers") == []  # worn under a top, never a category's main garment
    assert "Misc" not in learned.shares
    assert CategoryClasses.from_dict(learned.to_dict()) == learned


def test_one_main_garment_rule_for_voting_learning_and_evaluation():
    from fashion_search.category_classes import StoredGarment, main_garment

    photo = [
        StoredGarment("trousers", (0, 40, 30, 100)),
        StoredGarment("top", (0, 0, 30, 40)),
        StoredGarment("image", (0, 0, 50, 100)),
    ]
    # Voting (the category's classes unknown): the largest garment of a garment class.
    assert main_garment(photo) == 0
    # Evaluation's query garment: the largest of a class the category holds, even if smaller.
    assert main_garment(photo, held={"top", "knitwear"}) == 1
    # Nothing of a garment class (a model-free detector): its largest item; nothing at all: None.
    assert main_garment([StoredGarment("item", (0, 0, 5, 5)), StoredGarment("item", (0, 0, 9, 9))]) == 1
    assert main_garment([]) is None
    # Learning counts each image's vote by the same rule.
    rows = [_row("a", "Tops", g.label, g.box) for g in photo]
    assert CategoryClasses.learn(rows).shares == {"Tops": {"trousers": 1.0}}


def test_class_aware_search_meets_lookalike_classes_its_categories_hold():
    learned = CategoryClasses(
        shares={
            "Tops": {"top": 0.6, "knitwear": 0.3, "trousers": 0.1},
            "Skirts": {"skirt": 0.9, "top": 0.1},
            "Knitwear": {"knitwear": 1.0},
            "Gifts": {"bag": 0.5, "footwear": 0.3, "knitwear": 0.2},
        },
        images={"Tops": 10, "Skirts": 10, "Knitwear": 5, "Gifts": 10},
    )
    # A top meets the knitwear of the categories that hold tops (the parser often calls one
    # view of a sweater a top), but not the trousers worn in a Tops photo.
    assert learned.search_filter("top") == (["Tops"], ["knitwear", "top"])
    # Gifts' main class is bags: knitwear, no lookalike of a bag, needs a quarter of its photos.
    assert learned.search_filter("knitwear") == (["Knitwear", "Tops"], ["knitwear", "top"])
    assert learned.search_filter("footwear") == (["Gifts"], ["footwear"])
    assert learned.search_filter("skirt") == (["Skirts"], ["skirt"])  # never blouses
    # A category the parser has no class for holds a scatter of them: a bag meets none but bags.
    assert learned.search_filter("bag") == (["Gifts"], ["bag"])
    assert learned.search_filter("hat") == (None, ["hat"])  # held by no category: any category
    assert learned.search_filter("item") == (None, None)  # model-free detectors: no class filter
    assert learned.search_filter("top", category="Skirts") == ("Skirts", ["top"])
    assert learned.search_filter("skirt", category="Skirts") == ("Skirts", ["skirt"])


def test_a_category_holds_lookalikes_of_its_main_class_more_readily_than_other_classes():
    # Photos of tops: the tops' votes split four ways, and in a sixth of the photos the trousers
    # the model wears are the largest garment.
    tops = {"top": 0.38, "outerwear": 0.18, "trousers": 0.16, "dress": 0.15, "knitwear": 0.13}
    # A category with two kinds of product, and one with a few misparsed photos.
    underwear = {"legwear": 0.6, "top": 0.4}
    socks = {"legwear": 0.8, "bag": 0.2}
    learned = CategoryClasses(
        shares={"Tops": tops, "Underwear": underwear, "Socks": socks}, images={"Tops": 77, "Underwear": 10, "Socks": 10}
    )
    assert learned.classes_of("Tops") == {"top", "outerwear", "dress"}
    assert learned.classes_of("Underwear") == {"legwear", "top"}
    assert learned.classes_of("Socks") == {"legwear"}
    assert learned.categories_for("trousers") == []
    assert learned.classes_of("Unknown") == set()
    # Both cuts are kept with what was learned, so an index searches as it was built.
    strict = CategoryClasses(shares={"Tops": tops}, images={"Tops": 77}, min_share_unrelated=0.15)
    assert CategoryClasses.from_dict(strict.to_dict()).classes_of("Tops") == {"top", "outerwear", "dress", "trousers"}


def _photo(parts: dict[str, tuple[int, int, int, int]], size=(60, 90), shade: int = 0) -> Image.Image:
    """Garments as solid blocks of their class's colour; ``shade`` tells products apart."""
    image = Image.new("RGB", size, (255, 255, 255))
    for label, box in parts.items():
        image.paste(tuple(min(255, max(0, c + shade)) for c in COLOUR_CLASSES[label]), box)
    return image


def _indexed(tmp_path: Path, photos: dict[tuple[str, str], Image.Image]) -> SearchEngine:
    """An index of one photo per (category, product), built with the colour-class detector."""
    root = tmp_path / "catalog"
    for (category, pid), image in photos.items():
        (root / category / pid).mkdir(parents=True)
        image.save(root / category / pid / "front.png")
    engine = SearchEngine.create(tmp_path / "db", Component("test-pixels", {}), Component("test-colour-garments", {}))
    engine.index(load_catalog(folder=root))
    return engine


@pytest.fixture
def outfit_index(tmp_path: Path) -> SearchEngine:
    return _indexed(
        tmp_path,
        {
            ("Tops", "top-1"): _photo({"top": (10, 10, 50, 60)}),
            ("Tops", "top-2"): _photo({"top": (10, 5, 50, 50), "skirt": (15, 50, 45, 70)}),  # worn with a skirt
            ("Skirts", "skirt-1"): _photo({"skirt": (10, 20, 50, 70)}, shade=-25),
            ("Skirts", "skirt-2"): _photo({"skirt": (5, 30, 55, 80)}, shade=15),
            ("Shoes", "shoe-1"): _photo({"footwear": (10, 50, 50, 70)}),
        },
    )


def test_indexing_learns_which_classes_each_category_holds(outfit_index):
    learned = outfit_index.searcher.category_classes
    assert learned.classes_of("Tops") == {"top"}
    assert learned.classes_of("Skirts") == {"skirt"}
    assert learned.classes_of("Shoes") == {"footwear"}
    reopened = SearchEngine.open(outfit_index.store.uri)
    assert reopened.searcher.category_classes == learned


def test_a_skirt_only_finds_skirts_from_skirt_categories(outfit_index):
    query = _photo({"skirt": (15, 50, 45, 70)})  # the very skirt worn in top-2's photo
    result = outfit_index.search(query, k=5)
    [skirt] = result.garments
    assert skirt.garment.label == "skirt"
    assert {r.product_id for r in skirt.results} == {"skirt-1", "skirt-2"}

    # top-2's skirt was not indexed (Tops do not hold skirts), so even unrestricted search
    # cannot return the top for it.
    anything = outfit_index.search(query, k=5, same_class=False).garments[0]
    assert anything.results[0].product_id in {"skirt-1", "skirt-2"}


def _stored(engine: SearchEngine) -> dict[str, list[str]]:
    labels: dict[str, list[str]] = {}
    for row in engine.store.iter_rows(with_vectors=False):
        labels.setdefault(row["product_id"], []).append(row["label"])
    return {pid: sorted(v) for pid, v in labels.items()}


def test_catalog_photos_store_their_main_garment_and_the_classes_their_category_holds(outfit_index):
    assert _stored(outfit_index)["top-2"] == ["top"]  # the skirt worn with it is left out


def test_all_garments_indexes_what_models_wear_too(outfit_index, tmp_path):
    engine = SearchEngine.create(tmp_path / "all", Component("test-pixels", {}), Component("test-colour-garments", {}))
    engine.index(load_catalog(folder=tmp_path / "catalog"), all_garments=True)
    assert _stored(engine)["top-2"] == ["skirt", "top"]
    query = _photo({"skirt": (15, 50, 45, 70)})
    assert engine.search(query, k=5, same_class=False).garments[0].results[0].product_id == "top-2"
    assert {r.product_id for r in engine.search(query, k=5).garments[0].results} == {"skirt-1", "skirt-2"}


def _garment(label, box):
    return Garment(label=label, score=1.0, box=box)


def test_garment_filter_keeps_classes_the_category_holds_once_voted_in():
    chooser = CatalogGarmentFilter(min_share=0.3)
    top, knit, jeans = (
        _garment("top", (0, 0, 10, 10)),
        _garment("knitwear", (0, 0, 10, 10)),
        _garment("trousers", (0, 10, 10, 14)),
    )
    assert chooser.select("Tops", [jeans, top]) == [1]
    assert chooser.select("Tops", [knit, jeans]) == [0]  # knitwear: main garment, kept; 1 of 2 votes
    assert chooser.select("Tops", [top, knit, jeans]) == [0, 1]  # knitwear now holds a third of the votes
    assert chooser.select("Misc", [_garment("item", (0, 0, 5, 5)), _garment("image", (0, 0, 9, 9))]) == [0, 1]


def test_garment_filter_starts_from_what_earlier_runs_learned():
    learned = CategoryClasses(shares={"Tops": {"top": 0.6, "knitwear": 0.4}}, images={"Tops": 10})
    chooser = CatalogGarmentFilter(learned)
    top, knit = _garment("top", (0, 0, 10, 10)), _garment("knitwear", (0, 10, 10, 12))
    assert chooser.select("Tops", [top, knit]) == [0, 1]
    assert chooser.select("Skirts", [_garment("skirt", (0, 0, 12, 12)), top]) == [0]


def test_each_garment_of_an_outfit_gets_its_own_results(outfit_index):
    result = outfit_index.search(_photo({"top": (10, 5, 50, 45), "footwear": (10, 70, 50, 85)}), k=3)
    by_label = {g.garment.label: {r.category for r in g.results} for g in result.garments}
    assert by_label == {"top": {"Tops"}, "footwear": {"Shoes"}}


def test_a_product_parsed_as_another_class_of_its_category_is_still_found(tmp_path):
    engine = _indexed(
        tmp_path,
        {
            ("Tops", "top-1"): _photo({"top": (10, 10, 50, 60)}),
            ("Tops", "top-2"): _photo({"top": (10, 10, 50, 55)}),
            ("Tops", "sweater-1"): _photo({"knitwear": (10, 10, 50, 60)}),  # the parser says knitwear
            ("Skirts", "skirt-1"): _photo({"skirt": (10, 10, 50, 60)}),
        },
    )
    assert engine.searcher.category_classes.classes_of("Tops") == {"top", "knitwear"}
    # Another view of the sweater, parsed as a top this time.
    [garment] = engine.search(_photo({"top": (10, 10, 50, 60)}), k=5).garments
    assert garment.garment.label == "top"
    assert {r.product_id for r in garment.results} == {"top-1", "top-2", "sweater-1"}


def test_an_explicit_category_overrides_the_learned_ones(outfit_index, tmp_path):
    engine = SearchEngine.create(tmp_path / "all", Component("test-pixels", {}), Component("test-colour-garments", {}))
    engine.index(load_catalog(folder=tmp_path / "catalog"), all_garments=True)
    result = engine.search(_photo({"skirt": (10, 20, 50, 70)}), k=5, category="Tops")
    assert {r.product_id for r in result.garments[0].results} == {"top-2"}


def test_json_results_carry_each_garments_mask(outfit_index):
    query = _photo({"top": (10, 5, 50, 45), "footwear": (10, 70, 50, 85)})
    payload = json.loads(json.dumps(outfit_index.search(query, k=2).to_dict()))
    for garment in payload["garments"]:
        mask = decode_mask(garment["mask"])
        assert mask.shape == (90, 60)
        x1, y1, x2, y2 = garment["box"]
        assert mask[y1:y2, x1:x2].all() and mask.sum() == (x2 - x1) * (y2 - y1)
