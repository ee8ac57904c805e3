import numpy as np
from PIL import Image

from fashion_search.embed import create_embedder
from fashion_search.embed.colour import ColourHistogramEmbedder
from tests.helpers import make_product


def test_histogram_tells_colours_apart_and_ignores_the_backdrop():
    embed = ColourHistogramEmbedder().embed
    red_on_white, red_on_grey, blue_on_white = embed(
        [
            make_product((200, 20, 20)),
            make_product((200, 20, 20), background=(180, 180, 180)),
            make_product((20, 20, 200)),
        ]
    )
    assert red_on_white @ red_on_grey > 0.99
    assert red_on_white @ blue_on_white < 0.2


def test_plain_image_uses_all_pixels():
    [vector] = ColourHistogramEmbedder().embed([Image.new("RGB", (10, 10), (0, 128, 0))])
    assert np.isclose(np.linalg.norm(vector), 1.0) and vector.max() > 0.99


def test_cnn_and_colour_embedder_combines_both_into_unit_vectors():
    embedder = create_embedder("efficientnet-lite2+colour")
    assert embedder.name == "efficientnet-lite2+colour" and embedder.dim == 1280 + 72
    vectors = embedder.embed([make_product((200, 20, 20)), make_product((20, 20, 200)), make_product((190, 30, 30))])
    assert vectors.shape == (3, embedder.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1]
    assert [p["name"] for p in embedder.identity()["parts"]] == ["efficientnet-lite2", "colour-histogram"]


def test_colour_weight_is_an_option():
    plain = create_embedder("efficientnet-lite2+colour", colour_weight=0.0)
    cnn = create_embedder("efficientnet-lite2")
    image = [make_product((10, 120, 200))]
    assert np.allclose(plain.embed(image)[:, :1280], cnn.embed(image), atol=1e-5)
