"""The HTTP API against its own OpenAPI schema, with requests Schemathesis generates from it
(bounded examples per route): no 500, and every answer matches the schema it documents.

Write routes run with the API key (and once without it, where 401 is the documented answer).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from fashion_search import SearchEngine, load_catalog
from fashion_search.pipeline import Component
from fashion_search.web import Settings, create_app

pytestmark = pytest.mark.slow  # schemathesis against the API's schema

KEY = "schema-test-key-0123456789"
# Per route: bounded for CI; FASHION_SEARCH_SCHEMA_EXAMPLES=500 for a longer run.
EXAMPLES = int(os.environ.get("FASHION_SEARCH_SCHEMA_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from tests.helpers import make_product

    catalog = tmp_path_factory.mktemp("catalog")
    for category, product, colour in [("Tops", "red-1", (200, 30, 30)), ("Skirts", "blue-1", (30, 30, 200))]:
        folder = catalog / category / product
        folder.mkdir(parents=True)
        make_product(colour).save(folder / "view.jpg")
    metadata = catalog.parent / "metadata.csv"
    metadata.write_text("product_id,brand,price\nred-1,Nike,30\nblue-1,Zara,60\n")
    db = tmp_path_factory.mktemp("index") / "db.lance"
    engine = SearchEngine.create(db, embedder=Component("test-pixels", {}), detector=Component("foreground", {}))
    engine.index(load_catalog(folder=catalog, metadata_csv=metadata))
    settings_ = Settings(max_upload_bytes=200_000, api_key=KEY, uploads=str(Path(db).parent / "uploads"))
    return create_app(SearchEngine.open(db), settings_)


@pytest.mark.timeout(900)
def test_every_route_answers_within_its_schema_and_never_500(app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10  # every route is in the schema
    failures: dict[str, str] = {}
    runs: dict[str, int] = {}

    def checker(operation):
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:
            runs[operation.label] = runs.get(operation.label, 0) + 1
            # Schemas cannot say "a JPEG": bytes the schema allows may rightly be refused (415/422).
            case.call_and_validate(
                headers={"Authorization": f"Bearer {KEY}"}, excluded_checks=[positive_data_acceptance]
            )

        return check

    for operation in operations:
        check = checker(operation)
        try:
            check()
        except Exception as exc:  # collected, so that one report lists every route that fails
            failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:1500]}"
    print(f"schemathesis: {sum(runs.values())} requests over {len(operations)} operations")
    assert not failures, "\n\n".join(f"{label}\n{message}" for label, message in failures.items())
