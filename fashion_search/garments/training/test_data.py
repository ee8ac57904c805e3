"""Augmented training batches: seeded, whatever the number of threads."""
import numpy as np
from PIL import Image

import pytest

from fashion_search.garments.training.data import (
    AugmentPool,
    Example,
    augment,
    augmented_batches,
    read_examples,
    write_examples,
)


def _examples(n: int = 5) -> list[Example]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        pixels = rng.integers(0, 255, (48, 32, 3), dtype=np.uint8)
        labels = (np.arange(48 * 32).reshape(48, 32) % (i + 2)).astype(np.uint8)
        out.append(Example(Image.fromarray(pixels), Image.fromarray(labels, "L"), "street" if i % 2 else "product"))
    return out


def _flat(batches):
    return [[(img.copy(), lab.copy()) for img, lab in batch] for batch in batches]


def _same(a, b) -> bool:
    return [len(x) for x in a] == [len(x) for x in b] and all(
        np.array_equal(i1, i2) and np.array_equal(l1, l2) for x, y in zip(a, b) for (i1, l1), (i2, l2) in zip(x, y)
    )


def test_threaded_views_depend_on_the_seed_not_on_the_thread_count():
    examples, order = _examples(), [3, 0, 4, 1, 2]
    one = _flat(augmented_batches(examples, order, 2, (64, 32), np.random.default_rng(7), threads=1))
    three = _flat(augmented_batches(examples, order, 2, (64, 32), np.random.default_rng(7), threads=3))
    assert [len(b) for b in one] == [2, 2, 1]
    assert _same(one, three)
    other_seed = _flat(augmented_batches(examples, order, 2, (64, 32), np.random.default_rng(8), threads=3))
    assert not _same(one, other_seed)


def test_without_threads_views_draw_from_one_stream_as_the_shipped_model_was_trained():
    examples, order = _examples(), [2, 4, 1, 0, 3]
    rng = np.random.default_rng(7)
    expected = [[augment(examples[i], (64, 32), rng) for i in order[s : s + 2]] for s in range(0, 5, 2)]
    assert _same(_flat(augmented_batches(examples, order, 2, (64, 32), np.random.default_rng(7))), expected)


def test_packed_examples_come_back_in_order_with_their_labels_exact(tmp_path):
    rng = np.random.default_rng(2)
    smooth = np.clip(np.linspace(0, 255, 64)[None, :, None] + rng.normal(0, 4, (96, 64, 3)), 0, 255).astype(np.uint8)
    examples = [Example(Image.fromarray(smooth), Image.fromarray((np.arange(96 * 64).reshape(96, 64) % (i + 3)).astype(np.uint8), "L"),
                        kind) for i, kind in enumerate(["street", "product", "street"])]
    write_examples(tmp_path / "pack.zip", {"train": examples[:2], "val": examples[2:]})
    back = read_examples(tmp_path / "pack.zip")
    assert sorted(back) == ["train", "val"]
    assert [e.kind for e in back["train"]] == ["street", "product"] and [e.kind for e in back["val"]] == ["street"]
    for original, packed in zip(examples, back["train"] + back["val"]):
        assert packed.image.mode == "RGB" and packed.image.size == original.image.size
        assert np.array_equal(np.asarray(packed.labels), np.asarray(original.labels))
        # Lossy, but close: the pack stands in for the photos it was made from.
        assert np.abs(np.asarray(packed.image, np.float32) - np.asarray(original.image, np.float32)).mean() < 6


def test_worker_processes_make_the_same_views_as_threads():
    examples, order = _examples(), [3, 0, 4, 1, 2]
    threads = _flat(augmented_batches(examples, order, 2, (64, 32), np.random.default_rng(7), threads=2))
    with AugmentPool(examples, processes=3, batch_size=2, size=(64, 32)) as pool:
        processes = _flat(augmented_batches(examples, order, 2, (64, 32), np.random.default_rng(7), pool=pool))
        again = _flat(augmented_batches(examples, order[::-1], 2, (64, 32), np.random.default_rng(7), pool=pool))
        with pytest.raises(ValueError, match="other examples"):
            next(augmented_batches(_examples(), order, 2, (64, 32), np.random.default_rng(7), pool=pool))
    assert _same(threads, processes)
    # A second pass over the pool (the next epoch) is made as the threads would make it too.
    assert _same(again, _flat(augmented_batches(examples, order[::-1], 2, (64, 32), np.random.default_rng(7), threads=2)))
