import pytest

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
