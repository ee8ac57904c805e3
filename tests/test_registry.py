import pytest

from fashion_search.errors import UsageError
from fashion_search.registry import Registry, UnknownComponentError
from fashion_search.store import open_store


def test_stores_are_chosen_by_uri_scheme_and_unknown_schemes_are_named():
    with pytest.raises(UnknownComponentError, match="unknown vector store 'milvus'.*lancedb"):
        open_store("milvus://localhost:19530/catalog")


def test_a_new_implementation_plugs_in_by_name_without_touching_callers():
    registry: Registry = Registry("widget")

    @registry.register("square", "sq")
    def square(side: int = 2) -> int:
        return side * side

    assert registry.create("SQ", side=3) == 9
    assert registry.names() == ["sq", "square"]
    with pytest.raises(UnknownComponentError, match="available: sq, square"):
        registry.create("circle")


def test_options_given_as_text_are_converted_once_by_their_declared_types(tmp_path, monkeypatch):
    from typing import Optional

    from fashion_search.registry import PathLike

    registry: Registry = Registry("widget")

    @registry.register("box")
    class Box:
        def __init__(
            self,
            side: int = 1,
            scale: float = 1.0,
            shiny: bool = False,
            label: str = "",
            weights: Optional[PathLike] = None,
            threads: Optional[int] = None,
        ) -> None:
            self.options = dict(side=side, scale=scale, shiny=shiny, label=label, weights=weights, threads=threads)

    monkeypatch.chdir(tmp_path)
    parsed = registry.parse_options(
        "box", {"side": "3", "scale": "0.5", "shiny": "yes", "label": "007", "weights": "w.pth", "threads": "2"}
    )
    assert parsed == {
        "side": 3,
        "scale": 0.5,
        "shiny": True,
        "label": "007",
        "weights": str(tmp_path / "w.pth"),
        "threads": 2,
    }
    assert registry.create("box", **parsed).options == parsed


def test_a_bad_or_unknown_option_is_refused_with_what_the_component_takes():
    from fashion_search.errors import UsageError
    from fashion_search.registry import DETECTORS, EMBEDDERS

    with pytest.raises(UsageError, match="no option 'minarea'; its options: max_garments, merge_distance, min_area"):
        DETECTORS.parse_options("parser", {"minarea": "0.1"})
    with pytest.raises(UsageError, match="min_area takes a number, not 'big'"):
        DETECTORS.parse_options("parser", {"min_area": "big"})
    with pytest.raises(UsageError, match="flip takes true or false, not 'maybe'"):
        EMBEDDERS.parse_options("efficientnet-lite2", {"flip": "maybe"})


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e999"])
def test_a_numeric_option_that_is_not_finite_is_refused_naming_it(text):
    from fashion_search.registry import DETECTORS

    with pytest.raises(UsageError, match=f"option min_area takes a finite number, not '{text}'"):
        DETECTORS.parse_options("parser", {"min_area": text})
