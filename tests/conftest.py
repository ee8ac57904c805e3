"""Fixtures shared by every test; the stand-in models they use live in ``tests/helpers.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import SHARED_DATA, make_product


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data set not found at {SHARED_DATA} (it is provided beside the checkout in CI)")
    return SHARED_DATA


@pytest.fixture
def tiny_catalog(tmp_path: Path) -> Path:
    """Folder-layout catalog: 2 categories, 4 products, one of them with two views."""
    root = tmp_path / "catalog"
    products = {
        ("Tops", "red-1"): [make_product((220, 20, 20)), make_product((200, 30, 30), size=(70, 90))],
        ("Tops", "blue-1"): [make_product((20, 20, 220))],
        ("Skirts", "green-1"): [make_product((20, 200, 20), shape="stripes")],
        ("Skirts", "black-1"): [make_product((10, 10, 10))],
    }
    for (category, pid), images in products.items():
        folder = root / category / pid
        folder.mkdir(parents=True)
        for n, image in enumerate(images):
            image.save(folder / f"view{n}.jpg" if n == 0 else folder / f"VIEW{n}.PNG")
    return root


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that take the ``torch`` fixture need PyTorch, and those that take ``shared_data``
    run the models on real photos: mark them so that ``make test-fast``
    (``-m 'not slow and not torch and not browser'``) leaves them out."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "torch" in fixtures:
            item.add_marker(pytest.mark.torch)
        if "shared_data" in fixtures:
            item.add_marker(pytest.mark.slow)
