"""A filter tree (:mod:`fashion_search.store.filters`) as SQL for the PostgreSQL store."""

from __future__ import annotations

import json
import re
from typing import Any

from fashion_search.store.filters import (
    NUMBER_PATTERN,
    Condition,
    Filter,
    Junction,
    Not,
    RowCondition,
    negation_normal_form,
)
from fashion_search.store.postgres.connection import sql


def postgres_filter(node: Filter, params: dict[str, Any]) -> sql.Composable:
    """A filter tree as SQL: row conditions on the garment's own columns (B-tree indexes answer
    them), metadata conditions on the ``metadata`` column (JSON text). Column names and values
    become query parameters, added to ``params``. Text equality and ``in`` on metadata also
    carry a containment test that the GIN index on the metadata answers (it implies the exact
    test)."""
    return _postgres_filter(negation_normal_form(node), params)


_JSON_NUMBER = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")


def _json_forms(column: str, text: str) -> list[str]:
    """``{column: value}`` as JSON for each stored value whose text (``->>``) is ``text``: the
    string, and the number or boolean that prints so."""
    forms = [json.dumps({column: text})]
    if _JSON_NUMBER.match(text) or text in ("true", "false"):
        forms.append(json.dumps({column: None})[:-5] + text + "}")
    return forms


def _postgres_filter(node: Filter, params: dict[str, Any]) -> sql.Composable:
    # After negation_normal_form everything is monotone: "unknown" may read as "fails".
    if isinstance(node, Junction):
        return sql.SQL("({})").format(
            sql.SQL(f" {node.op.upper()} ").join(_postgres_filter(p, params) for p in node.parts)
        )

    def placeholder(value: Any) -> sql.Composable:
        name = f"filter_{len([n for n in params if n.startswith('filter_')])}"
        params[name] = value
        return sql.Placeholder(name)

    negated = isinstance(node, Not)
    condition = node.part if isinstance(node, Not) else node
    if isinstance(condition, RowCondition):
        if not condition.values:
            return sql.SQL("TRUE" if negated else "FALSE")
        test = sql.SQL("{} = ANY({})").format(sql.Identifier(condition.field), placeholder(list(condition.values)))
        return sql.SQL("(NOT ({}))").format(test) if negated else sql.SQL("({})").format(test)
    assert isinstance(condition, Condition)
    text = sql.SQL("NULLIF(metadata::jsonb ->> {}, '')").format(placeholder(condition.column))
    value: sql.Composable = text
    if condition.numeric:
        # A value that is not a number compares as NULL, as in the Lance store.
        value = sql.SQL("(CASE WHEN {t} ~ {pattern} THEN {t}::float8 END)").format(
            t=text, pattern=placeholder(NUMBER_PATTERN)
        )
    values = [float(v) if condition.numeric else str(v) for v in condition.values]
    if condition.op == "in":
        test = sql.SQL("{} = ANY({})").format(value, placeholder(values))
    else:
        test = sql.SQL("{} {} {}").format(value, sql.SQL(condition.op), placeholder(values[0]))
    if negated:
        return sql.SQL("(NOT ({}))").format(test)
    if condition.numeric or condition.op not in ("=", "in"):
        return sql.SQL("({})").format(test)
    contains = sql.SQL(" OR ").join(
        sql.SQL("metadata::jsonb @> {}::jsonb").format(placeholder(form))
        for v in values
        for form in _json_forms(condition.column, str(v))
    )
    return sql.SQL("(({}) AND {})").format(contains, test)
