import numpy as np
import pytest

from fashion_search.garments import decode_mask, encode_mask


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (40, 30)])
def test_mask_encoding_round_trips(shape):
    rng = np.random.default_rng(0)
    for mask in (rng.random(shape) > 0.5, np.zeros(shape, bool), np.ones(shape, bool)):
        rle = encode_mask(mask)
        assert rle["size"] == list(shape)
        assert sum(rle["counts"]) == mask.size
        np.testing.assert_array_equal(decode_mask(rle), mask)


def test_mask_encoding_starts_with_a_background_run():
    mask = np.array([[True, True, False], [False, True, True]])
    assert encode_mask(mask)["counts"] == [0, 2, 2, 2]


def test_decoding_rejects_runs_of_the_wrong_length():
    with pytest.raises(ValueError):
        decode_mask({"size": [2, 2], "counts": [1, 2]})
