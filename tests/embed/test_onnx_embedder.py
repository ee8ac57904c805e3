from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from fashion_search.embed import create_embedder
from fashion_search.embed.onnx_cnn import DEFAULT_MODEL_PATH, OnnxCnnEmbedder
from fashion_search.embed.preprocess import EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD
from fashion_search.errors import ModelNotFoundError
from fashion_search.images import load_image


@pytest.fixture(scope="module")
def embedder() -> OnnxCnnEmbedder:
    return OnnxCnnEmbedder(threads=2)


def garment(color: tuple[int, int, int], stripe: int, size: tuple[int, int] = (300, 400)) -> Image.Image:
    """A crude striped shirt on white, like a catalog product shot."""
    w, h = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    sx, sy = w / 300, h / 400
    outline = [(60, 40), (240, 40), (290, 120), (240, 140), (240, 380), (60, 380), (60, 140), (10, 120)]
    draw.polygon([(x * sx, y * sy) for x, y in outline], fill=color)
    for y in range(int(60 * sy), int(380 * sy), stripe):
        draw.rectangle([60 * sx, y, 240 * sx, y + stripe // 3], fill="white")
    return img


def test_shipped_model_is_small_enough() -> None:
    assert DEFAULT_MODEL_PATH.is_file(), "run fashion-search train export-embedder"
    assert DEFAULT_MODEL_PATH.stat().st_size < 25_000_000


def test_registered_under_its_name() -> None:
    emb = create_embedder("efficientnet-lite2", threads=1, batch_size=4)
    assert isinstance(emb, OnnxCnnEmbedder)
    assert (emb.name, emb.dim, emb.threads, emb.batch_size) == ("efficientnet-lite2", 1280, 1, 4)
    assert emb.identity()["name"] == "efficientnet-lite2" and emb.identity()["dim"] == 1280


def test_model_metadata_matches_preprocessing(embedder: OnnxCnnEmbedder) -> None:
    # A stale model exported with other statistics would silently degrade retrieval.
    assert embedder.image_size == 260
    assert embedder.mean == pytest.approx(EFFICIENTNET_LITE_MEAN)
    assert embedder.std == pytest.approx(EFFICIENTNET_LITE_STD)
    assert embedder.pooling == "gem3"


def test_shape_dtype_and_unit_norm(embedder: OnnxCnnEmbedder) -> None:
    vectors = embedder.embed([garment((200, 30, 30), 30), garment((30, 160, 60), 12)])
    assert vectors.shape == (2, 1280) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(vectors).all()


def test_empty_input(embedder: OnnxCnnEmbedder) -> None:
    assert embedder.embed([]).shape == (0, 1280)


def test_deterministic_across_calls_and_batching(embedder: OnnxCnnEmbedder) -> None:
    images = [garment((200, 30, 30), s) for s in (9, 12, 15, 18, 21)]
    first = embedder.embed(images)
    assert np.array_equal(first, embedder.embed(images))
    small_batches = OnnxCnnEmbedder(threads=1, batch_size=2).embed(images)
    np.testing.assert_allclose(first, small_batches, atol=1e-5)
    alone = embedder.embed(images[3:4])
    np.testing.assert_allclose(first[3:4], alone, atol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (4000, 3), (3, 4000), (1100, 762)])
def test_any_size(embedder: OnnxCnnEmbedder, size: tuple[int, int]) -> None:
    vectors = embedder.embed([Image.new("RGB", size, (40, 80, 160))])
    assert vectors.shape == (1, 1280)
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-5)


def test_grayscale_and_transparent_inputs(embedder: OnnxCnnEmbedder) -> None:
    shirt = garment((200, 30, 30), 30)
    grey = load_image(ImageOps.grayscale(shirt))
    rgba = shirt.convert("RGBA")
    rgba.putalpha(Image.new("L", shirt.size, 255))
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    vectors = embedder.embed([grey, load_image(buf.getvalue()), ImageOps.grayscale(shirt)])
    assert vectors.shape == (3, 1280)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-5)  # "L" converted internally
    # an opaque RGBA image is the same picture as the RGB one
    np.testing.assert_allclose(vectors[1], embedder.embed([shirt])[0], atol=1e-5)


def test_similar_images_are_closer(embedder: OnnxCnnEmbedder) -> None:
    shirt = garment((200, 30, 30), 30)
    same_smaller = shirt.resize((240, 320))
    other = garment((30, 160, 60), 12)
    a, b, c = embedder.embed([shirt, same_smaller, other])
    assert a @ b > 0.98
    assert a @ b > a @ c + 0.05


def test_flip_averaging_is_mirror_invariant() -> None:
    flipping = OnnxCnnEmbedder(threads=1, flip=True)
    assert flipping.identity()["flip"] is True
    # 200x400 -> 130x260 leaves even margins, so the mirrored letterbox is exactly the mirror.
    shirt = garment((200, 30, 30), 30, size=(200, 400))
    asymmetric = shirt.copy()
    ImageDraw.Draw(asymmetric).rectangle([20, 300, 60, 380], fill=(0, 0, 255))
    a, b = flipping.embed([asymmetric, ImageOps.mirror(asymmetric)])
    np.testing.assert_allclose(a, b, atol=1e-5)
    plain = OnnxCnnEmbedder(threads=1).embed([asymmetric, ImageOps.mirror(asymmetric)])
    assert plain[0] @ plain[1] < 1 - 1e-4  # without flip averaging they do differ


def test_missing_model_says_how_to_regenerate(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="export-embedder"):
        OnnxCnnEmbedder(model_path=tmp_path / "absent.onnx")
    with pytest.raises(FileNotFoundError):  # and is still a FileNotFoundError to callers
        create_embedder("efficientnet-lite2", model_path=str(tmp_path / "absent.onnx"))


def test_invalid_batch_size() -> None:
    with pytest.raises(ValueError):
        OnnxCnnEmbedder(batch_size=0)


def test_shipped_model_loads_on_older_onnxruntime() -> None:
    # pyproject allows onnxruntime >= 1.17, which refuses ONNX IR version 10 and later. ir_version
    # is field 1 of ModelProto, serialised first: tag 0x08, then the version as a varint.
    head = DEFAULT_MODEL_PATH.read_bytes()[:2]
    assert head[0] == 0x08 and head[1] <= 9, f"IR version {head[1]} needs onnxruntime >= 1.18"
