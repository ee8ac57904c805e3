"""The search page in a real browser: Debian's headless Chromium driven by Playwright, against
the app served by uvicorn on a loopback port, with real photos from ``../shared/data``.

Screenshots are saved under ``artifacts/browser/`` (ignored by git) for people to look at.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from fashion_search import SearchEngine, load_catalog
from fashion_search.garments import Garment, GarmentDetector
from fashion_search.pipeline import Component
from fashion_search.registry import DETECTORS
from fashion_search.web import create_app

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = os.environ.get("FASHION_SEARCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _require_browser() -> None:
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[dev]')"
    if reason is None and not shutil.which(CHROMIUM):
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium; `make test` does it)"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run in CI: {reason}")  # CI installs both: missing is a bug
        pytest.skip(reason)


class HalvesDetector(GarmentDetector):
    """Two garments per photo, a boxed top half and a masked bottom half: what the page must
    show for a multi-garment detector, decided here rather than by a model."""

    name = "test-halves"

    def detect(self, image: Image.Image) -> list[Garment]:
        w, h = image.size
        mask = np.zeros((h, w), bool)
        mask[h // 2 :, w // 4 : 3 * w // 4] = True
        return [
            Garment("top", 0.9, (0, 0, w, h // 2)),
            Garment("skirt", 0.8, (w // 4, h // 2, 3 * w // 4, h), mask=mask),
        ]


@DETECTORS.register("test-halves")
def _halves(**options: object) -> GarmentDetector:
    return HalvesDetector()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def brand_and_price(product_id: str) -> dict[str, str]:
    number = sum(map(ord, product_id))
    return {"brand": ("Alpha", "Beta")[number % 2], "price": str(10 + number % 90)}


@pytest.fixture(scope="module")
def zalora_photos() -> list[Path]:
    from tests.helpers import SHARED_DATA

    zalora = SHARED_DATA / "zalora"
    if not zalora.is_dir():
        pytest.skip(f"shared data set not found at {zalora} (it is provided beside the checkout in CI)")
    return sorted(zalora.glob("*/*/*.jpg"))


@pytest.fixture(scope="module")
def server(zalora_photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A uvicorn server on a free loopback port over a small Zalora index, built with the fast
    test embedder and the two-garment detector above: these tests are about the page, not about
    ranking (the README's screenshots and the server benchmark use the real models)."""
    _require_browser()
    import uvicorn

    zalora = zalora_photos[0].parents[2]
    chosen = {p.resolve() for p in zalora_photos[::6]}  # catalog items carry resolved paths
    items = [item for item in load_catalog(folder=zalora) if item.path in chosen]
    assert items, f"no catalog items matched under {zalora}"
    for item in items:  # metadata for the page's filters
        item.metadata.update(brand_and_price(item.product_id))
    db = tmp_path_factory.mktemp("browser") / "zalora.lance"
    SearchEngine.create(db, embedder=Component("test-pixels", {}), detector=Component("test-halves", {})).index(items)
    port = free_port()
    app = create_app(db, text_encoder=Component("test-words", {}))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser(server: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(server)
    page.errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_uploading_a_photo_shows_outlined_garments_and_result_cards(page, zalora_photos):
    page.set_input_files("#file", str(zalora_photos[1]))
    page.wait_for_selector(".result-card img")
    assert page.locator("#photo-boxes g.garment").count() == 2
    assert page.locator(".garment-results").count() == 2
    labels = page.locator("#photo-boxes text").all_text_contents()
    assert labels == ["1. top", "2. skirt"]
    cards = page.locator(".result-card")
    assert cards.count() >= 1
    first = cards.first
    assert first.locator("h3").inner_text().strip()
    assert "% similar" in first.inner_text()
    assert first.locator("img").get_attribute("alt")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.result-card img')].slice(0, 4)"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    assert " ms" in page.inner_text("#status-text")
    assert page.is_hidden("#spinner") and page.is_hidden("#error")
    screenshot(page, "search-desktop")
    assert page.errors == []  # type: ignore[attr-defined]


def test_words_alone_show_one_grid_and_with_a_photo_refine_its_garments(page, zalora_photos):
    page.fill("#text", "black")
    page.press("#text", "Enter")
    page.wait_for_selector(".result-card")
    assert page.locator(".garment-results").count() == 1 and page.is_hidden("#photo")
    assert "“black”" in page.inner_text(".garment-results h2") and "product" in page.inner_text("#status-text")
    page.set_input_files("#file", str(zalora_photos[1]))  # the words now refine the photo
    page.wait_for_selector("#photo-boxes g.garment")
    assert page.locator(".garment-results").count() == 2
    assert "“black”" in page.inner_text("#photo-caption")
    page.click("#clear-photo")  # back to the words alone
    page.wait_for_function("() => document.querySelectorAll('.garment-results').length === 1")
    assert page.is_hidden("#photo") and page.is_hidden("#clear-photo")
    assert page.errors == []  # type: ignore[attr-defined]


def test_more_like_this_searches_from_a_catalog_product(page, zalora_photos):
    page.set_input_files("#file", str(zalora_photos[1]))
    page.wait_for_selector(".result-card")
    product_id = page.locator(".result-card h3").nth(1).inner_text().strip()
    page.locator(".result-card .more").nth(1).click()
    page.wait_for_function("id => document.querySelector('#photo-caption').textContent.includes(id)", arg=product_id)
    page.wait_for_selector(".result-card")
    shown = [t.strip() for t in page.locator(".result-card h3").all_inner_texts()]
    assert shown and product_id not in shown
    assert "/api/images/" in page.get_attribute("#photo-img", "src")


def test_metadata_filters_on_the_page_narrow_the_results(page, zalora_photos):
    page.wait_for_selector("#filters:not([hidden]) select[name='filter-brand']")
    assert page.locator("#filters input[type='number']").count() == 2  # the price range
    page.select_option("select[name='filter-brand']", "Beta")
    page.set_input_files("#file", str(zalora_photos[1]))
    page.wait_for_selector(".result-card")
    shown = {t.strip() for t in page.locator(".result-card h3").all_inner_texts()}
    assert shown and {brand_and_price(pid)["brand"] for pid in shown} == {"Beta"}
    page.fill("#filters input[aria-label='price to']", "40")
    with page.expect_response(lambda r: "/api/search" in r.url and "price" in r.url) as answer:
        page.dispatch_event("#filters input[aria-label='price to']", "change")
    found = {r["product_id"] for g in answer.value.json()["garments"] for r in g["results"]}
    assert found, "no Beta product under 40 in the sample"
    assert all(brand_and_price(pid)["brand"] == "Beta" and int(brand_and_price(pid)["price"]) <= 40 for pid in found)
    page.wait_for_selector(".result-card")
    screenshot(page, "search-filters")
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_file_that_is_not_an_image_gets_a_clear_message(page, tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is not a photo")
    page.set_input_files("#file", str(fake))
    page.wait_for_selector("#error:not([hidden])")
    assert "not a photo" in page.inner_text("#error")
    assert page.is_hidden("#spinner")


def test_phone_width_has_one_column_and_no_sideways_scrolling(browser, server, zalora_photos):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(server)
    page.set_input_files("#file", str(zalora_photos[1]))
    page.wait_for_selector(".result-card img")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.get_attribute("#camera", "capture") == "environment"  # phones offer the camera
    screenshot(page, "search-phone")
    context.close()


def test_the_page_is_usable_from_the_keyboard(page, zalora_photos):
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "pick"
    page.set_input_files("#file", str(zalora_photos[1]))
    page.wait_for_selector(".result-card .more")
    page.locator(".result-card .more").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#photo-caption').textContent.startsWith('More like')")


def test_api_docs_render_from_local_assets(browser, server):
    context = browser.new_context()
    page = context.new_page()
    external: list[str] = []
    page.on(
        "request",
        lambda r: external.append(r.url) if not r.url.startswith(server) and not r.url.startswith("data:") else None,
    )
    page.goto(f"{server}/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
    assert "/api/search" in page.inner_text(".swagger-ui")
    assert external == []  # no CDN: the docs work on a machine without internet
    context.close()


def test_clicking_a_garment_shows_only_its_results(page, zalora_photos):
    page.set_input_files("#file", str(zalora_photos[1]))
    page.wait_for_selector(".result-card")
    sections = page.locator(".garment-results")
    page.get_by_role("button", name="2. skirt").click()
    assert sections.nth(0).is_hidden() and sections.nth(1).is_visible()
    assert page.get_attribute(".chip[data-index='1']", "aria-pressed") == "true"
    page.locator("#photo-boxes rect.box").nth(0).click()  # on the photo itself
    assert sections.nth(0).is_visible() and sections.nth(1).is_hidden()
    page.get_by_role("button", name="All garments").click()
    assert sections.nth(0).is_visible() and sections.nth(1).is_visible()
