"""Screenshots of the search page for the README: desktop and phone width, with real results.

Usage:
    python scripts/take_screenshots.py [--data ../shared/data] [--photo PATH] [--out docs]

Serves the Zalora index that ``benchmarks/bench_server.py`` builds (built here if missing,
under the ignored ``.cache/``) on a loopback port, searches with one Zalora photo in Debian's
headless Chromium (``/usr/bin/chromium``, driven by Playwright) and saves palette PNGs under
``docs/``. The product photos in them come from the shared evaluation data set.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_server import CACHE, fashion_search, start_server, stop_server, wait_healthy  # noqa: E402

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
MAX_BYTES = 500_000


def save_small_png(png: bytes, path: Path) -> int:
    """A 256-colour PNG: screenshots are mostly flat UI, so this keeps them well under the limit."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = 256
    while True:
        out = io.BytesIO()
        image.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(
            out, "PNG", optimize=True
        )
        if out.tell() <= MAX_BYTES or colours <= 32:
            path.write_bytes(out.getvalue())
            return out.tell()
        colours //= 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--photo", help="query photo (default: a Zalora product photo)")
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--db", help="serve this existing index instead of the cached Zalora one")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    data = Path(args.data)
    photo = (
        Path(args.photo)
        if args.photo
        else data / "zalora" / "Atasan" / "002984" / "luire-by-raden-sirait-5655-8595522-1.jpg"
    )
    db = Path(args.db) if args.db else CACHE / "zalora.lance"
    if not args.db:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [*fashion_search(), "index", str(data / "zalora"), "--db", str(db)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    server, url = start_server(db)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        wait_healthy(url, server, timeout=180)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            for name, size, mobile in (("desktop", (1280, 900), False), ("phone", (390, 844), True)):
                context = browser.new_context(
                    viewport={"width": size[0], "height": size[1]},
                    is_mobile=mobile,
                    has_touch=mobile,
                    device_scale_factor=1,
                )
                page = context.new_page()
                page.goto(url)
                page.wait_for_function("() => document.querySelectorAll('#category option').length > 1")
                page.set_input_files("#file", str(photo))
                page.wait_for_selector(".result-card img")
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.result-card img')].slice(0, 8)"
                    ".every(img => img.complete && img.naturalWidth > 0)"
                )
                page.wait_for_timeout(300)
                # On a phone the results come below the photo: show the page down to the first cards.
                clip = {"x": 0, "y": 0, "width": size[0], "height": 1500} if mobile else None
                png = page.screenshot(full_page=mobile, clip=clip)
                written = save_small_png(png, out / f"screenshot-{name}.png")
                print(f"{out / f'screenshot-{name}.png'}: {written / 1000:.0f} kB")
                context.close()
            browser.close()
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
