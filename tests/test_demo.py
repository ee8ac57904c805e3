import gzip
import struct

import numpy as np

from fashion_search import load_catalog
from fashion_search.demo import CLASSES, write_fashion_mnist_catalog


def _write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_demo_catalog_is_written_in_the_folder_layout_with_metadata(tmp_path):
    source = tmp_path / "fmnist"
    source.mkdir()
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 3)
    for prefix in ("t10k", "train"):
        _write_idx(source / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (30, 28, 28)))
        _write_idx(source / f"{prefix}-labels-idx1-ubyte.gz", labels)
    out = write_fashion_mnist_catalog(tmp_path / "demo", per_class=2, source=source, queries=2)
    items = load_catalog(folder=out / "catalog", metadata_csv=out / "metadata.csv")
    assert len(items) == 20 and {i.category for i in items} == set(CLASSES)
    assert items[0].metadata["source"] == "Fashion-MNIST test split"
    assert len(list((out / "queries").glob("*.png"))) == 2
    # Idempotent: a second run rewrites nothing, so the demo index stays unchanged.
    mtimes = [i.path.stat().st_mtime_ns for i in items]
    write_fashion_mnist_catalog(tmp_path / "demo", per_class=2, source=source, queries=2)
    assert [i.path.stat().st_mtime_ns for i in items] == mtimes
