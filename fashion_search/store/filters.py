"""Metadata filters: a small expression language over a catalog's metadata columns.

A search may be narrowed by what the catalog's metadata says, e.g.
``brand = "Nike" and price < 50`` or ``colour in ("Red", "Pink") and not season = "Winter"``.
The text is parsed here into a tree of typed conditions, checked against the columns the
index holds (:class:`MetadataColumns`), and each store turns the tree into its own query with
values as parameters or escaped literals, never by pasting the user's text. Stores apply the
filter before ranking, like the category filter.

Grammar (keywords in any case)::

    filter    := or
    or        := and ("or" and)*
    and       := unary ("and" unary)*
    unary     := "not" unary | "(" filter ")" | condition
    condition := column op value
               | column ["not"] "in" "(" value ("," value)* ")"
               | column "between" value "and" value
    op        := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    column    := a name of letters, digits, "_", "-", "." | a name in backquotes: `base colour`
    value     := "text" | 'text' | a number (12, -3.5, 1e3)

A column is a number column when every product's value is a number (the CSV's text
``"49.90"`` counts as one); ranges (``<``, ``between``) need one. Comparisons follow SQL: a
product without the column (or with an empty value) passes no condition on it, and ``not`` of
such a condition does not pass either.

The same tree carries what search itself narrows by, as :class:`RowCondition`: a stored
garment's catalog category, garment label, product id or image id (class-aware search, "more
like this" leaving the product out). A store receives one tree (:func:`all_of` builds it) and
compiles it once, so every kind of narrowing reaches every store by one path.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Union

from fashion_search.errors import FashionSearchError

# What counts as a number in metadata: plain decimal notation. Bounded digits keep every
# match inside a float's range, so no store overflows converting one.
NUMBER_PATTERN = r"^\s*[+-]?([0-9]{1,30}(\.[0-9]{0,30})?|\.[0-9]{1,30})([eE][+-]?[0-9]{1,2})?\s*$"
_NUMBER = re.compile(NUMBER_PATTERN)
MAX_FILTER_CHARS = 4_000
MAX_CONDITIONS = 100
MAX_DEPTH = 32
# A text column with at most this many distinct values is offered as a picker.
MAX_LISTED_VALUES = 50

Value = Union[str, float]


class FilterError(FashionSearchError):
    """A filter that cannot be parsed or names what the index does not hold."""


def as_number(value: Any) -> Optional[float]:
    """The number a metadata value holds (a number, or text in plain decimal notation), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str) and _NUMBER.match(value):
        return float(value)
    return None


def as_text(value: Any) -> Optional[str]:
    """How a metadata value compares as text (None when absent or empty: a blank CSV cell)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# -- the parsed tree ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """``column op values``: ``op`` is one of = != < <= > >= in, ``numeric`` says whether values
    compare as numbers (a number column) or as text."""

    column: str
    op: str
    values: tuple[Value, ...]
    numeric: bool


@dataclass(frozen=True)
class Not:
    part: "Filter"


@dataclass(frozen=True)
class Junction:
    """``and`` or ``or`` of two or more parts."""

    op: str
    parts: tuple["Filter", ...]


# A stored garment's own fields that a search may be narrowed by (never empty, never null).
ROW_FILTER_FIELDS = ("category", "label", "product_id", "image_id")


@dataclass(frozen=True)
class RowCondition:
    """``field in values`` on a stored garment's own ``field`` (one of :data:`ROW_FILTER_FIELDS`); no
    values passes nothing."""

    field: str
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.field not in ROW_FILTER_FIELDS:
            raise ValueError(f"no row field {self.field!r}; row conditions name one of {', '.join(ROW_FILTER_FIELDS)}")


Filter = Union[Condition, RowCondition, Not, Junction]


def one_of(field: str, values: "str | Iterable[str] | None") -> Optional[Filter]:
    """Garments whose ``field`` is ``values`` (one text) or any of them (a list, possibly
    empty: then none pass); None for None, which narrows nothing."""
    if values is None:
        return None
    chosen = (values,) if isinstance(values, str) else tuple(sorted({str(v) for v in values}))
    return RowCondition(field, chosen)


def excluding(field: str, value: Optional[str]) -> Optional[Filter]:
    """Garments whose ``field`` is not ``value`` (None: no exclusion)."""
    return None if value is None else Not(RowCondition(field, (str(value),)))


def all_of(*parts: Optional[Filter]) -> Optional[Filter]:
    """The conjunction of the parts given (None parts are left out; nested ``and`` flattened);
    None when nothing is left, which passes everything."""
    flat: list[Filter] = []
    for part in parts:
        if part is None:
            continue
        if isinstance(part, Junction) and part.op == "and":
            flat.extend(part.parts)
        else:
            flat.append(part)
    if not flat:
        return None
    return flat[0] if len(flat) == 1 else Junction("and", tuple(flat))


def passes_nothing(node: Optional[Filter]) -> bool:
    """Whether ``node`` is known to pass no garment without asking a store (a condition on a
    field with no allowed values, in a conjunction): a store answers such a search with nothing."""
    if isinstance(node, RowCondition):
        return not node.values
    if isinstance(node, Junction):
        results = [passes_nothing(p) for p in node.parts]
        return any(results) if node.op == "and" else all(results)
    return False


# Row conditions that leave out one product or image: they fail few rows, so a store plans a
# search by what else narrows it.
_EXCLUDING_FIELDS = ("product_id", "image_id")


def split_exclusions(node: Optional[Filter]) -> tuple[Optional[Filter], Optional[Filter]]:
    """``(narrowing, exclusions)`` of a tree whose conjuncts may leave out products or images:
    what stores count to choose exact or approximate search, and the rest."""
    parts = list(node.parts) if isinstance(node, Junction) and node.op == "and" else [node] if node else []
    excluded = [
        p
        for p in parts
        if isinstance(p, Not) and isinstance(p.part, RowCondition) and p.part.field in _EXCLUDING_FIELDS
    ]
    return all_of(*(p for p in parts if p not in excluded)), all_of(*excluded)


def evaluate(node: Filter, metadata: Mapping[str, Any], row: Optional[Mapping[str, Any]] = None) -> Optional[bool]:
    """Whether a product's ``metadata`` (and the garment's own fields in ``row``, for row
    conditions) passes ``node``, in SQL's three-valued logic (None: unknown, because a column it
    compares is absent): what the stores compute."""
    if isinstance(node, Junction):
        results = [evaluate(p, metadata, row) for p in node.parts]
        if node.op == "and":
            return False if False in results else (None if None in results else True)
        return True if True in results else (None if None in results else False)
    if isinstance(node, Not):
        result = evaluate(node.part, metadata, row)
        return None if result is None else not result
    if isinstance(node, RowCondition):
        return str((row or {}).get(node.field)) in node.values
    raw = metadata.get(node.column)
    value: Optional[Value] = as_number(raw) if node.numeric else as_text(raw)
    if value is None:
        return None
    if node.op == "in":
        return value in node.values
    other = node.values[0]
    return {
        "=": value == other,
        "!=": value != other,
        "<": value < other,  # type: ignore[operator]
        "<=": value <= other,  # type: ignore[operator]
        ">": value > other,  # type: ignore[operator]
        ">=": value >= other,  # type: ignore[operator]
    }[node.op]


_NEGATED = {"=": "!=", "!=": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}


def negation_normal_form(node: Filter, negate: bool = False) -> Filter:
    """``node`` with every ``not`` pushed down onto a condition (De Morgan; a negated
    comparison becomes the opposite one, which keeps SQL's unknowns unknown). What is left is
    monotone, so a store may read "unknown" as "fails" everywhere, and the only negations left
    are ``not (text = ...)`` and ``not (... in ...)``, which a store must write as "has the
    column, and another value"."""
    if isinstance(node, Not):
        return negation_normal_form(node.part, not negate)
    if isinstance(node, Junction):
        op = {"and": "or", "or": "and"}[node.op] if negate else node.op
        return Junction(op, tuple(negation_normal_form(p, negate) for p in node.parts))
    if not negate:
        return node
    if isinstance(node, Condition) and node.op in _NEGATED:
        return Condition(node.column, _NEGATED[node.op], node.values, node.numeric)
    return Not(node)


def value_tag(column: str, value: Any) -> str:
    """The tag a store may keep for "``column`` has this value" (a JSON pair: no separator
    that a name or value could contain)."""
    return json.dumps([column, value], ensure_ascii=False)


def column_tag(column: str) -> str:
    """The tag for "``column`` has a value"."""
    return json.dumps([column], ensure_ascii=False)


def metadata_tags(metadata: Mapping[str, Any]) -> list[str]:
    """A product's metadata as tags: one per column that has a value and one per
    ``(column, value as text)``; what an equality or ``in`` condition looks up in an index."""
    tags = []
    for column, raw in sorted(metadata.items()):
        text = as_text(raw)
        if text is not None:
            tags += [column_tag(column), value_tag(column, text)]
    return tags


def columns_of(node: Filter) -> set[str]:
    """The metadata columns ``node`` compares (row conditions name none)."""
    if isinstance(node, Condition):
        return {node.column}
    if isinstance(node, RowCondition):
        return set()
    if isinstance(node, Not):
        return columns_of(node.part)
    return set().union(*(columns_of(p) for p in node.parts))


# -- what the index holds ----------------------------------------------------------------------


@dataclass
class MetadataColumn:
    name: str
    kind: str  # "number" or "text"
    products: int  # products that have a value
    values: Optional[list[str]] = None  # a text column's distinct values, when few
    min: Optional[float] = None
    max: Optional[float] = None
    # Products per value (as text), while the column has few distinct values: what lets a write
    # take a replaced or removed product's value back exactly. None: too many to count.
    counts: Optional[dict[str, int]] = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "type": self.kind, "products": self.products}
        if self.kind == "number":
            data.update(min=self.min, max=self.max)
        else:
            data["values"] = self.values
        if self.counts is not None:
            data["counts"] = dict(sorted(self.counts.items()))
        return data

    def settled(self) -> "MetadataColumn":
        """This column with its kind, values and range read again from its counts, where it has
        them (a number column is one whose every value is a number)."""
        if self.counts is None:
            if self.kind == "number":
                return self
            return MetadataColumn(self.name, "text", self.products, self.values)
        numbers = [as_number(value) for value in self.counts]
        if numbers and all(n is not None for n in numbers):
            return MetadataColumn(
                self.name,
                "number",
                self.products,
                None,
                min(numbers),
                max(numbers),
                dict(self.counts),  # type: ignore[type-var]
            )
        return MetadataColumn(self.name, "text", self.products, sorted(self.counts), counts=dict(self.counts))


@dataclass
class MetadataColumns:
    """The metadata columns an index's products have, with their types: what filters may name,
    and what the page offers (a picker for a text column with few values, a range for a number
    column). Learned from the stored products at each index run and kept in the index's record;
    each catalog write updates it (:meth:`updated`)."""

    columns: dict[str, MetadataColumn] = field(default_factory=dict)

    @classmethod
    def learn(cls, metadata_per_product: Iterable[Mapping[str, Any]]) -> "MetadataColumns":
        return cls().updated(added=metadata_per_product)

    def updated(
        self, removed: Iterable[Mapping[str, Any]] = (), added: Iterable[Mapping[str, Any]] = ()
    ) -> "MetadataColumns":
        """These columns with the ``removed`` products' metadata taken back and the ``added``
        products' counted: what a catalog write changes, without a scan of the store. Counts,
        listed values and columns are exact (a column no product has any more is gone); a
        number column with more than :data:`MAX_LISTED_VALUES` distinct values keeps its range
        wide until an index run learns it again."""
        columns = {
            name: MetadataColumn(**{**vars(c), "counts": None if c.counts is None else dict(c.counts)})
            for name, c in self.columns.items()
        }
        changes = [(m, -1) for m in removed] + [(m, 1) for m in added]
        for metadata, sign in changes:
            for name, raw in metadata.items():
                text = as_text(raw)
                if text is None:
                    continue
                number = as_number(raw)
                column = columns.get(name)
                if column is None:
                    if sign < 0:  # never counted (a record older than its rows): nothing to take back
                        continue
                    column = columns[name] = MetadataColumn(
                        name, "number" if number is not None else "text", 0, counts={}
                    )
                column.products += sign
                if column.counts is not None:
                    left = column.counts.get(text, 0) + sign
                    if left > 0:
                        column.counts[text] = left
                    else:
                        column.counts.pop(text, None)
                    if len(column.counts) > MAX_LISTED_VALUES:
                        column.counts = None
                elif sign > 0 and column.values is not None and text not in column.values:
                    # Listed without counts (recorded before counts were kept): values only grow.
                    grown = sorted(column.values + [text])
                    column.values = grown if len(grown) <= MAX_LISTED_VALUES else None
                if sign > 0:  # ranges only widen here; counts, where kept, settle them exactly
                    if number is None:
                        column.kind = "text"
                    else:
                        column.min = number if column.min is None else min(column.min, number)
                        column.max = number if column.max is None else max(column.max, number)
        return MetadataColumns(
            {name: column.settled() for name, column in sorted(columns.items()) if column.products > 0}
        )

    def to_dict(self) -> dict[str, Any]:
        return {name: c.to_dict() for name, c in self.columns.items()}

    @classmethod
    def from_dict(cls, data: Optional[Mapping[str, Any]]) -> "MetadataColumns":
        columns = {}
        for name, c in (data or {}).items():
            counts = c.get("counts")
            columns[name] = MetadataColumn(
                name,
                c["type"],
                int(c.get("products", 0)),
                c.get("values"),
                c.get("min"),
                c.get("max"),
                None if counts is None else {str(k): int(v) for k, v in counts.items()},
            )
        return cls(columns)


# -- parsing -----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)(?![A-Za-z0-9_.\-])
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<quoted>`[^`]+`)
      | (?P<op><=|>=|!=|<>|==|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z_][A-Za-z0-9_.\-]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "between"}


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, column, op, punct, keyword, end
    text: str
    value: Any
    at: int


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", r"\1", body)


def _tokens(text: str) -> list[_Token]:
    tokens = []
    at = 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            break
        match = _TOKEN.match(text, at)
        if not match or match.end() == at:
            raise FilterError(f"filter: unexpected {text[at : at + 12]!r} at character {at + 1}")
        kind = match.lastgroup or ""
        raw = match.group(kind)
        start = match.start(kind)
        if kind == "number":
            tokens.append(_Token("number", raw, raw, start))
        elif kind == "string":
            tokens.append(_Token("string", raw, _unescape(raw[1:-1]), start))
        elif kind == "quoted":
            tokens.append(_Token("column", raw, raw[1:-1], start))
        elif kind == "word" and raw.lower() in _KEYWORDS:
            tokens.append(_Token("keyword", raw, raw.lower(), start))
        elif kind == "word":
            tokens.append(_Token("column", raw, raw, start))
        else:
            tokens.append(_Token(kind, raw, "=" if raw == "==" else ("!=" if raw == "<>" else raw), start))
        at = match.end()
    tokens.append(_Token("end", "", None, len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str, columns: MetadataColumns) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0
        self.columns = columns
        self.conditions = 0

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def fail(self, token: _Token, wanted: str) -> FilterError:
        found = "the end" if token.kind == "end" else repr(token.text)
        return FilterError(f"filter: expected {wanted} at character {token.at + 1}, found {found}")

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token.kind == "keyword" and token.value == word:
            self.pos += 1
            return True
        return False

    def expect_punct(self, char: str) -> None:
        token = self.take()
        if token.kind != "punct" or token.value != char:
            raise self.fail(token, f"{char!r}")

    def parse(self) -> Filter:
        node = self.disjunction(0)
        token = self.peek()
        if token.kind != "end":
            raise self.fail(token, "'and', 'or' or the end")
        return node

    def disjunction(self, depth: int) -> Filter:
        parts = [self.conjunction(depth)]
        while self.keyword("or"):
            parts.append(self.conjunction(depth))
        return parts[0] if len(parts) == 1 else Junction("or", tuple(parts))

    def conjunction(self, depth: int) -> Filter:
        parts = [self.unary(depth)]
        while self.keyword("and"):
            parts.append(self.unary(depth))
        return parts[0] if len(parts) == 1 else Junction("and", tuple(parts))

    def unary(self, depth: int) -> Filter:
        if depth >= MAX_DEPTH:
            raise FilterError(f"filter: nested more than {MAX_DEPTH} levels deep")
        if self.keyword("not"):
            return Not(self.unary(depth + 1))
        token = self.peek()
        if token.kind == "punct" and token.value == "(":
            self.take()
            node = self.disjunction(depth + 1)
            self.expect_punct(")")
            return node
        return self.condition()

    def condition(self) -> Filter:
        token = self.take()
        if token.kind != "column":
            raise self.fail(token, "a column name, 'not' or '('")
        column = self.columns.columns.get(token.value)
        if column is None:
            known = ", ".join(self.columns.columns) or "none: re-run `fashion-search index` to record them"
            raise FilterError(f"filter: no metadata column {token.value!r} in this index (columns: {known})")
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise FilterError(f"filter: more than {MAX_CONDITIONS} conditions")
        numeric = column.kind == "number"
        negate = self.keyword("not")
        if self.keyword("in"):
            self.expect_punct("(")
            values = [self.value(column)]
            while self.peek().kind == "punct" and self.peek().value == ",":
                self.take()
                values.append(self.value(column))
            self.expect_punct(")")
            node: Filter = Condition(column.name, "in", tuple(dict.fromkeys(values)), numeric)
            return Not(node) if negate else node
        if negate:
            raise self.fail(self.peek(), "'in' after 'not'")
        if self.keyword("between"):
            self.need_number(column, "between")
            low = self.value(column)
            if not self.keyword("and"):
                raise self.fail(self.peek(), "'and' in 'between ... and ...'")
            high = self.value(column)
            return Junction(
                "and", (Condition(column.name, ">=", (low,), True), Condition(column.name, "<=", (high,), True))
            )
        op = self.take()
        if op.kind != "op":
            raise self.fail(op, "a comparison (=, !=, <, <=, >, >=), 'in' or 'between'")
        if op.value not in ("=", "!="):
            self.need_number(column, op.value)
        return Condition(column.name, op.value, (self.value(column),), numeric)

    def need_number(self, column: MetadataColumn, op: str) -> None:
        if column.kind != "number":
            raise FilterError(f"filter: {op!r} needs a number column; {column.name!r} holds text")

    def value(self, column: MetadataColumn) -> Value:
        token = self.take()
        if token.kind not in ("number", "string"):
            raise self.fail(token, "a value: a number or a quoted text")
        if column.kind == "number":
            number = as_number(token.value)
            if number is None:
                raise FilterError(
                    f"filter: {column.name!r} is a number column; {token.text} is not a number "
                    f"(at character {token.at + 1})"
                )
            return number
        if token.value == "":
            raise FilterError(
                f"filter: an empty text at character {token.at + 1} never matches (blank values count as absent)"
            )
        # A number compared with a text column is compared as it was written (size = 38).
        return str(token.value)


def parse_filter(text: str, columns: MetadataColumns) -> Filter:
    """Parse ``text`` against the index's ``columns``; :class:`FilterError` says what is wrong
    and where."""
    if not isinstance(text, str) or not text.strip():
        raise FilterError("filter: empty")
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"filter: longer than {MAX_FILTER_CHARS:,} characters")
    return _Parser(text, columns).parse()


__all__ = [
    "ROW_FILTER_FIELDS",
    "Condition",
    "Filter",
    "FilterError",
    "Junction",
    "MetadataColumn",
    "MetadataColumns",
    "Not",
    "RowCondition",
    "all_of",
    "as_number",
    "as_text",
    "column_tag",
    "columns_of",
    "evaluate",
    "excluding",
    "metadata_tags",
    "negation_normal_form",
    "one_of",
    "parse_filter",
    "passes_nothing",
    "split_exclusions",
    "value_tag",
]
