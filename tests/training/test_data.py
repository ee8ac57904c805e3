"""Augmented training batches: seeded, whatever the number of threads."""

import numpy as np
import pytest
from PIL import Image

from fashion_search.training.parser.data import (
    AugmentPool,
    Example,
    augment,
    augmented_batches,
    read_examples,
    read_pack_source,
    rotate_garment_hue,
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


def test_hue_turns_garment_pixels_only_and_all_of_them_alike():
    from fashion_search.garments.taxonomy import IGNORE, class_index

    labels = np.full((8, 12), class_index("background"), np.uint8)
    labels[:, 3:6] = class_index("skin")
    labels[:, 6:8] = class_index("hair")
    labels[:4, 8:] = class_index("dress")
    labels[4:, 8:] = class_index("bag")
    labels[:, 0] = IGNORE
    pixels = np.zeros((8, 12, 3), np.uint8)
    pixels[...] = (200, 40, 40)  # red everywhere: a turn shows wherever it lands
    turned = rotate_garment_hue(pixels, labels, 1 / 3)
    garment = np.isin(labels, [class_index("dress"), class_index("bag")])
    assert np.array_equal(turned[~garment], pixels[~garment])
    # A third of the circle takes red to green, the same green for the dress and the bag.
    assert (turned[garment][:, 1] > 150).all() and (turned[garment][:, 0] < 80).all()
    assert len({tuple(v) for v in turned[garment]}) == 1
    assert np.array_equal(rotate_garment_hue(pixels, labels, 0.0), pixels)


def test_views_without_hue_are_unchanged_by_the_option_and_with_it_only_in_colour():
    examples, order = _examples(), [2, 4, 1, 0, 3]
    plain = _flat(augmented_batches(examples, order, 2, (64, 32), np.random.default_rng(7)))
    assert _same(plain, _flat(augmented_batches(examples, order, 2, (64, 32), np.random.default_rng(7), hue=0.0)))
    # Seeded view by view (threads), the turn is drawn last in each view: placement and labels stay
    # those of the plain view.
    plain = _flat(augmented_batches(examples, order, 2, (64, 32), np.random.default_rng(7), threads=2))
    turned = _flat(augmented_batches(examples, order, 2, (64, 32), np.random.default_rng(7), threads=2, hue=0.5))
    assert all(np.array_equal(l1, l2) for x, y in zip(plain, turned) for (_, l1), (_, l2) in zip(x, y))
    assert not _same(plain, turned)


def test_packed_examples_come_back_in_order_with_their_labels_exact(tmp_path):
    rng = np.random.default_rng(2)
    smooth = np.clip(np.linspace(0, 255, 64)[None, :, None] + rng.normal(0, 4, (96, 64, 3)), 0, 255).astype(np.uint8)
    examples = [
        Example(
            Image.fromarray(smooth),
            Image.fromarray((np.arange(96 * 64).reshape(96, 64) % (i + 3)).astype(np.uint8), "L"),
            kind,
        )
        for i, kind in enumerate(["street", "product", "street"])
    ]
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
        with pytest.raises(ValueError, match="hue"):
            next(augmented_batches(examples, order, 2, (64, 32), np.random.default_rng(7), pool=pool, hue=0.5))
    with AugmentPool(examples, processes=2, batch_size=2, size=(64, 32), hue=0.5) as pool:
        turned = _flat(augmented_batches(examples, order, 2, (64, 32), np.random.default_rng(7), pool=pool, hue=0.5))
    assert _same(
        turned, _flat(augmented_batches(examples, order, 2, (64, 32), np.random.default_rng(7), threads=2, hue=0.5))
    )
    assert _same(threads, processes)
    # A second pass over the pool (the next epoch) is made as the threads would make it too.
    assert _same(
        again, _flat(augmented_batches(examples, order[::-1], 2, (64, 32), np.random.default_rng(7), threads=2))
    )


def test_worn_shot_labels_take_the_catalog_class_over_lookalikes_and_the_backdrop_over_the_teacher():
    from fashion_search.garments.taxonomy import IGNORE, class_index
    from fashion_search.training.parser.data import worn_shot_labels

    mask = np.zeros((40, 20), bool)
    mask[5:35, 4:16] = True
    teacher = np.full((40, 20), class_index("skin"), np.uint8)
    teacher[10:20, 4:16] = class_index("knitwear")  # a T-shirt read as a sweater...
    teacher[20:25, 4:16] = class_index("top")
    teacher[25:30, 4:16] = class_index("trousers")  # ...over trousers, not a lookalike of a top
    teacher[30:32, 4:16] = class_index("background")  # the teacher missed part of the foreground
    teacher[0:5, :] = class_index("hat")  # outside the foreground: the backdrop wins
    confidence = np.full((40, 20), 0.9, np.float32)
    confidence[32:35, 4:16] = 0.3  # unsure skin

    labels = worn_shot_labels(mask, "top", teacher, confidence)

    assert (labels[10:25, 4:16] == class_index("top")).all()
    assert (labels[25:30, 4:16] == class_index("trousers")).all()
    assert (labels[30:35, 4:16] == IGNORE).all()
    assert (labels[~mask] == class_index("background")).all()
    assert (labels[5:10, 4:16] == class_index("skin")).all()
    # A teacher that found no garment of the catalog's kind gives no example.
    assert worn_shot_labels(mask, "skirt", teacher, confidence) is None


def test_worn_shots_are_photos_with_a_person_of_lookalike_classes_outside_the_holdout(tmp_path):
    import zlib

    from fashion_search.garments.taxonomy import class_index
    from fashion_search.training.parser.data import load_worn_shots

    skin_colour, shirt_colour = (224, 172, 140), (30, 60, 200)

    def photo(with_person: bool) -> Image.Image:
        pixels = np.full((64, 48, 3), 255, np.uint8)
        pixels[10:50, 12:36] = shirt_colour
        if with_person:
            pixels[2:10, 18:30] = skin_colour  # a face above the shirt
        return Image.fromarray(pixels)

    def teacher(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        rgb = np.asarray(image)
        labels = np.zeros(rgb.shape[:2], np.uint8)
        labels[(rgb == shirt_colour).all(-1)] = class_index("knitwear")
        labels[(rgb == skin_colour).all(-1)] = class_index("skin")
        return labels, np.ones(labels.shape, np.float32)

    ids = [str(i) for i in range(100, 200)]
    kept = [i for i in ids if zlib.crc32(i.encode()) % 5][:3]
    held_out = next(i for i in ids if zlib.crc32(i.encode()) % 5 == 0)
    rows = [
        (kept[0], "Tshirts", True),
        (kept[1], "Tshirts", False),
        (kept[2], "Handbags", True),
        (held_out, "Tshirts", True),
    ]
    (tmp_path / "images").mkdir()
    lines = ["id,image,articleType"]
    for product, article, worn in rows:
        photo(worn).save(tmp_path / "images" / f"{product}.png")
        lines.append(f"{product},images/{product}.png,{article}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")

    shots = load_worn_shots(tmp_path, per_class=5, seed=0, teacher=teacher)

    # Only the worn T-shirt outside the holdout: the unworn one is a plain product shot, a bag has
    # no lookalike class to correct, and the held-out product is kept for evaluation.
    assert len(shots) == 1 and shots[0].kind == "product"
    labels = np.asarray(shots[0].labels)
    assert (labels[20:40, 14:34] == class_index("top")).all()
    assert (labels[4:8, 20:28] == class_index("skin")).all()


def test_a_pack_records_how_its_examples_were_made(tmp_path):
    example = Example(Image.new("RGB", (32, 48), "white"), Image.new("L", (32, 48), 0), "product")
    write_examples(tmp_path / "pack.zip", {"train": [example]}, quality=70, source={"worn_per_class": 120})
    assert read_pack_source(tmp_path / "pack.zip") == {"worn_per_class": 120, "webp_quality": 70}
    assert list(read_examples(tmp_path / "pack.zip")) == ["train"]  # the record is not an example
