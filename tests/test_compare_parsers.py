"""scripts/compare_parsers.py: two parsers compared on the same photos."""

import pytest

from fashion_search.training.parser.evaluate import ProductShotOutcome, ProductShotReport
from tests.helpers import load_script


def _script():
    return load_script("compare_parsers")


def _shots(outcomes):
    return ProductShotReport(
        [
            ProductShotOutcome(str(i), "top", group, one, True, largest, False)
            for i, (group, one, largest) in enumerate(outcomes)
        ]
    )


def test_product_shots_are_compared_photo_by_photo_with_an_interval():
    a = _shots([("no person", True, True)] * 40 + [("worn", False, True)] * 40)
    b = _shots([("no person", True, True)] * 40 + [("worn", True, False)] * 40)
    paired = _script().paired_product_shots(a, b)
    worn = paired["worn: exactly one garment, right class"]
    assert (worn["a"], worn["b"], worn["difference"], worn["95ci"]) == (0.0, 1.0, 1.0, [1.0, 1.0])
    assert paired["all: largest garment right"]["difference"] == -0.5
    assert paired["no person: exactly one garment, right class"]["95ci"] == [0.0, 0.0]


def test_product_shots_of_different_photos_are_refused():
    with pytest.raises(ValueError, match="different photos"):
        _script().paired_product_shots(_shots([("worn", True, True)]), _shots([("no person", True, True)]))


def test_a_product_shot_report_sums_its_photos_by_group_and_class():
    report = _shots([("no person", True, True)] * 3 + [("worn", False, True)])
    assert report.groups["all"] == {
        "photos": 4,
        "exactly_one_right": 0.75,
        "right_class_found": 1.0,
        "largest_is_right": 1.0,
        "nothing_found": 0.0,
    }
    assert report.groups["worn"]["photos"] == 1 and report.per_class == {"top": 0.75}
