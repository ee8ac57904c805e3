"""The embedded demo catalog: Zalando's Fashion-MNIST articles from Debian's package.

Fashion-MNIST images are real Zalando product photos reduced to 28x28 grey, stored as light
articles on black. They are written here as dark-on-white product shots (as a shop shows
them), enlarged so that they are visible in a result list, in the folder layout
``<Category>/<ProductID>/<image>.png``, plus a metadata CSV. Query images come from the other
split, so a demo search never finds its own query.
"""

from __future__ import annotations

import csv
import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

CLASSES = ["T-shirt-top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle-boot"]
DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    _, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if dtype_code != 0x08:
        raise ValueError(f"{path}: unexpected idx type {dtype_code:#x}")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_split(source: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "t10k" if split == "test" else "train"
    images_file = source / f"{prefix}-images-idx3-ubyte.gz"
    if not images_file.exists():
        raise FileNotFoundError(
            f"{images_file} not found: install Debian's dataset-fashion-mnist package "
            "(apt-get install dataset-fashion-mnist) or pass --source"
        )
    return _read_idx(images_file), _read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")


def _as_product_shot(pixels: np.ndarray, size: int) -> Image.Image:
    image = ImageOps.invert(Image.fromarray(pixels, "L"))
    return image.resize((size, size), Image.Resampling.BICUBIC).convert("RGB")


def write_fashion_mnist_catalog(
    out: str | Path, per_class: int = 100, source: str | Path = DEFAULT_SOURCE, queries: int = 3, size: int = 112
) -> Path:
    """Write ``per_class`` products per article type to ``out/catalog`` and a few query photos
    from the training split to ``out/queries``; returns ``out``. Idempotent: existing files are
    left untouched so that re-running the demo re-indexes nothing."""
    out, source = Path(out).resolve(), Path(source)
    catalog, query_dir = out / "catalog", out / "queries"
    test_images, test_labels = load_split(source, "test")
    rows = []
    for label, name in enumerate(CLASSES):
        for index in np.flatnonzero(test_labels == label)[:per_class]:
            product_id = f"fmnist-{index:05d}"
            path = catalog / name / product_id / f"{product_id}.png"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                _as_product_shot(test_images[index], size).save(path)
            rows.append({"product_id": product_id, "article_type": name, "source": "Fashion-MNIST test split"})
    with open(out / "metadata.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["product_id", "article_type", "source"])
        writer.writeheader()
        writer.writerows(rows)
    train_images, train_labels = load_split(source, "train")
    query_dir.mkdir(parents=True, exist_ok=True)
    for label in range(min(queries, len(CLASSES))):
        index = int(np.flatnonzero(train_labels == label)[0])
        path = query_dir / f"{CLASSES[label]}.png"
        if not path.exists():
            _as_product_shot(train_images[index], size).save(path)
    return out
