"""The metadata filter language: parsing, checking against the index's columns, evaluation."""

from __future__ import annotations

import pytest

from fashion_search.store.filters import (
    MAX_DEPTH,
    Condition,
    FilterError,
    Junction,
    MetadataColumns,
    Not,
    evaluate,
    parse_filter,
)

COLUMNS = MetadataColumns.learn(
    [
        {"brand": "Nike", "price": "49.90", "colour": "Red", "base colour": "Navy", "size": "38"},
        {"brand": "Zara", "price": 120, "colour": "Blue", "size": "XL"},
        {"brand": "Nike", "price": "15", "year": "2012"},
    ]
)


def test_learned_columns_type_numbers_and_list_few_text_values() -> None:
    assert COLUMNS.columns["price"].kind == "number"
    assert (COLUMNS.columns["price"].min, COLUMNS.columns["price"].max) == (15.0, 120.0)
    assert COLUMNS.columns["size"].kind == "text"  # one value is not a number
    assert COLUMNS.columns["brand"].values == ["Nike", "Zara"]
    assert COLUMNS.columns["brand"].products == 3 and COLUMNS.columns["colour"].products == 2
    assert MetadataColumns.from_dict(COLUMNS.to_dict()).to_dict() == COLUMNS.to_dict()


def test_a_text_column_with_many_values_lists_none() -> None:
    many = MetadataColumns.learn({"title": f"item {i}"} for i in range(500))
    assert many.columns["title"].kind == "text" and many.columns["title"].values is None


def test_and_binds_tighter_than_or_and_keywords_ignore_case() -> None:
    tree = parse_filter("brand = 'Nike' OR brand = 'Zara' AND price < 50", COLUMNS)
    assert tree == Junction(
        "or",
        (
            Condition("brand", "=", ("Nike",), False),
            Junction("and", (Condition("brand", "=", ("Zara",), False), Condition("price", "<", (50.0,), True))),
        ),
    )


def test_in_not_in_between_and_parentheses() -> None:
    assert parse_filter('colour in ("Red", "Blue", "Red")', COLUMNS) == Condition(
        "colour", "in", ("Red", "Blue"), False
    )
    assert parse_filter("colour not in ('Red')", COLUMNS) == Not(Condition("colour", "in", ("Red",), False))
    assert parse_filter("price between 10 and 20", COLUMNS) == Junction(
        "and", (Condition("price", ">=", (10.0,), True), Condition("price", "<=", (20.0,), True))
    )
    assert parse_filter("not (brand == 'Nike')", COLUMNS) == Not(Condition("brand", "=", ("Nike",), False))
    assert parse_filter("brand <> 'Nike'", COLUMNS) == Condition("brand", "!=", ("Nike",), False)


def test_backquoted_column_names_and_escaped_quotes() -> None:
    assert parse_filter("`base colour` = 'Navy'", COLUMNS) == Condition("base colour", "=", ("Navy",), False)
    assert parse_filter(r"brand = 'O\'Neill'", COLUMNS) == Condition("brand", "=", ("O'Neill",), False)
    assert parse_filter('brand = "O\'Neill"', COLUMNS) == Condition("brand", "=", ("O'Neill",), False)


def test_a_number_compared_with_a_text_column_is_compared_as_written() -> None:
    assert parse_filter("size = 38", COLUMNS) == Condition("size", "=", ("38",), False)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("material = 'silk'", "no metadata column 'material'.*columns: base colour, brand"),
        ("brand = Nike", "expected a value.*found 'Nike'"),
        ("brand < 'Nike'", "'<' needs a number column; 'brand' holds text"),
        ("price < 'cheap'", "'price' is a number column; 'cheap' is not a number"),
        ("price < 10 and", "expected a column name.*found the end"),
        ("(price < 10", r"expected '\)'.*found the end"),
        ("price < 10)", "expected 'and', 'or' or the end.*character 11"),
        ("brand = 'Nike", "unexpected"),
        ("price ~ 3", "unexpected '~ 3'"),
        ("brand not = 'x'", "expected 'in' after 'not'"),
        ("colour in ()", "expected a value"),
        ("price between 1 2", "'and' in 'between"),
        ("brand = 'a'; DROP TABLE garments", "unexpected ';"),
    ],
)
def test_bad_filters_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        parse_filter(text, COLUMNS)


def test_limits_bound_what_one_filter_may_cost() -> None:
    with pytest.raises(FilterError, match="nested more than"):
        parse_filter("(" * (MAX_DEPTH + 1) + "price < 1" + ")" * (MAX_DEPTH + 1), COLUMNS)
    with pytest.raises(FilterError, match="more than 100 conditions"):
        parse_filter(" or ".join(["price < 1"] * 101), COLUMNS)
    with pytest.raises(FilterError, match="longer than"):
        parse_filter("brand = '" + "x" * 5000 + "'", COLUMNS)


def test_an_index_without_recorded_columns_says_how_to_record_them() -> None:
    with pytest.raises(FilterError, match="columns: none: re-run `fashion-search index`"):
        parse_filter("brand = 'Nike'", MetadataColumns())


def test_evaluation_follows_sql_three_valued_logic() -> None:
    red = {"colour": "Red", "price": "10"}
    plain = {"price": "not a price"}
    assert evaluate(parse_filter("colour = 'Red'", COLUMNS), red) is True
    assert evaluate(parse_filter("colour = 'Red'", COLUMNS), plain) is None
    assert evaluate(parse_filter("not colour = 'Red'", COLUMNS), plain) is None
    assert evaluate(parse_filter("colour = 'Red' or price < 20", COLUMNS), red) is True
    assert evaluate(parse_filter("colour = 'Blue' and price < 20", COLUMNS), plain) is None
    assert evaluate(parse_filter("price < 20", COLUMNS), plain) is None  # text in a number column
    assert evaluate(parse_filter("price < 20 or colour = 'Red'", COLUMNS), plain) is None
    assert evaluate(parse_filter("colour = 'Blue' and price < 20", COLUMNS), red) is False


def test_negation_normal_form_pushes_not_onto_conditions_and_keeps_unknowns() -> None:
    from fashion_search.store.filters import negation_normal_form

    tree = parse_filter("not (brand = 'Nike' or price < 20) and not colour in ('Red')", COLUMNS)
    assert negation_normal_form(tree) == Junction(
        "and",
        (
            Junction("and", (Condition("brand", "!=", ("Nike",), False), Condition("price", ">=", (20.0,), True))),
            Not(Condition("colour", "in", ("Red",), False)),
        ),
    )
    products = [{"brand": "Nike", "price": "10"}, {"price": "30"}, {"brand": "Zara", "colour": "Red"}, {}]
    for text in (
        "not (brand = 'Nike' or price < 20)",
        "not not colour in ('Red', 'Blue')",
        "not price between 5 and 20",
    ):
        tree = parse_filter(text, COLUMNS)
        for metadata in products:
            # The rewrite passes exactly the products the original passes.
            assert bool(evaluate(negation_normal_form(tree), metadata)) == bool(evaluate(tree, metadata))


def test_metadata_tags_name_each_column_and_value_unambiguously() -> None:
    from fashion_search.store.filters import column_tag, metadata_tags, value_tag

    tags = metadata_tags({"brand": "Nike", "a=b": 'c"d', "price": 49.0, "blank": ""})
    assert tags == [
        column_tag("a=b"),
        value_tag("a=b", 'c"d'),
        column_tag("brand"),
        value_tag("brand", "Nike"),
        column_tag("price"),
        value_tag("price", "49"),
    ]
    assert value_tag("a", "b=c") != value_tag("a=b", "c")


def test_an_empty_text_value_is_refused_because_it_never_matches() -> None:
    with pytest.raises(FilterError, match="empty text at character 9 never matches"):
        parse_filter("brand = ''", COLUMNS)
